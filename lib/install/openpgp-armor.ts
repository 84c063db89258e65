/*
 * Just enough OpenPGP (RFC 4880) to check, at synth, that a file given as a signing key is
 * one armored public key (and never a private one), to compute its fingerprint, and to
 * re-armor it without comments for the install document.
 */
import * as crypto from 'node:crypto';

/** What a key text holds. */
export interface OpenPgpKeyDescription {
  /** The key re-armored (no headers or comments), when it is usable. */
  readonly armored?: string;
  /** The v4 fingerprint of the primary key, upper-case hex. */
  readonly fingerprint?: string;
  /** Why it cannot be used; empty when it can. */
  readonly problems: string[];
}

const TAG_SECRET_KEY = 5;
const TAG_PUBLIC_KEY = 6;
const TAG_SECRET_SUBKEY = 7;

/** OpenPGP's CRC-24 of the armor checksum line. */
function crc24(data: Buffer): number {
  let crc = 0xb704ce;
  for (const byte of data) {
    crc ^= byte << 16;
    for (let i = 0; i < 8; i++) {
      crc <<= 1;
      if (crc & 0x1000000) crc ^= 0x1864cfb;
    }
  }
  return crc & 0xffffff;
}

interface Packet { readonly tag: number; readonly body: Buffer }

/** Splits binary OpenPGP data into packets (old and new formats); throws on a malformed one. */
function packets(data: Buffer): Packet[] {
  const result: Packet[] = [];
  let at = 0;
  while (at < data.length) {
    const ctb = data[at++];
    if ((ctb & 0x80) === 0) throw new Error(`byte ${at - 1} is not a packet header`);
    let tag: number;
    let length: number;
    if (ctb & 0x40) {
      tag = ctb & 0x3f;
      const first = data[at++];
      if (first < 192) {
        length = first;
      } else if (first < 224) {
        length = ((first - 192) << 8) + data[at++] + 192;
      } else if (first === 255) {
        length = data.readUInt32BE(at);
        at += 4;
      } else {
        throw new Error('partial body lengths do not occur in keys');
      }
    } else {
      tag = (ctb >> 2) & 0x0f;
      const lengthType = ctb & 0x03;
      if (lengthType === 3) throw new Error('indeterminate lengths do not occur in keys');
      const size = [1, 2, 4][lengthType];
      length = size === 1 ? data[at] : size === 2 ? data.readUInt16BE(at) : data.readUInt32BE(at);
      at += size;
    }
    if (at + length > data.length) throw new Error('a packet runs past the end of the data');
    result.push({ tag, body: data.subarray(at, at + length) });
    at += length;
  }
  return result;
}

function armor(data: Buffer): string {
  const body = data.toString('base64').match(/.{1,64}/g) ?? [];
  const crc = Buffer.from([(crc24(data) >> 16) & 0xff, (crc24(data) >> 8) & 0xff, crc24(data) & 0xff]).toString('base64');
  return ['-----BEGIN PGP PUBLIC KEY BLOCK-----', '', ...body, `=${crc}`, '-----END PGP PUBLIC KEY BLOCK-----'].join('\n');
}

const HOW_TO_EXPORT = 'export the public key with `gpg --armor --export <fingerprint>`';

/** Checks an armored OpenPGP public key and describes it. */
export function describeOpenPgpPublicKey(text: string): OpenPgpKeyDescription {
  const blocks = [...text.matchAll(/-----BEGIN PGP ([A-Z ]+)-----/g)].map((m) => m[1]);
  if (blocks.some((b) => b.includes('PRIVATE'))) {
    return { problems: [`this is a PRIVATE key block: a private key must never go into a template or document; ${HOW_TO_EXPORT}`] };
  }
  if (blocks.length === 0) {
    return { problems: [`not an ASCII-armored OpenPGP public key (no -----BEGIN PGP PUBLIC KEY BLOCK----- line); ${HOW_TO_EXPORT}`] };
  }
  if (blocks.length > 1 || blocks[0] !== 'PUBLIC KEY BLOCK') {
    return { problems: [`expected exactly one PGP PUBLIC KEY BLOCK, found ${blocks.map((b) => `PGP ${b}`).join(', ')}`] };
  }
  const lines = text.replace(/\r/g, '').split('\n').map((l) => l.trim());
  const begin = lines.indexOf('-----BEGIN PGP PUBLIC KEY BLOCK-----');
  const end = lines.indexOf('-----END PGP PUBLIC KEY BLOCK-----', begin);
  if (end < 0) return { problems: ['the armor has no -----END PGP PUBLIC KEY BLOCK----- line'] };
  const inner = lines.slice(begin + 1, end);
  const blank = inner.indexOf('');
  const body = blank >= 0 ? inner.slice(blank + 1) : inner.filter((l) => !/^[A-Za-z-]+: /.test(l));
  const checksum = body.find((l) => l.startsWith('='));
  const base64 = body.filter((l) => l !== '' && !l.startsWith('=')).join('');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(base64)) return { problems: ['the armor body is not base64'] };
  const data = Buffer.from(base64, 'base64');
  if (checksum !== undefined) {
    const expected = Buffer.from(checksum.slice(1), 'base64');
    const actual = crc24(data);
    if (expected.length !== 3 || expected.readUIntBE(0, 3) !== actual) return { problems: ['the armor checksum does not match: the key text is damaged'] };
  }
  let parsed: Packet[];
  try {
    parsed = packets(data);
  } catch (error) {
    return { problems: [`not a valid OpenPGP key: ${(error as Error).message}`] };
  }
  if (parsed.some((p) => p.tag === TAG_SECRET_KEY || p.tag === TAG_SECRET_SUBKEY)) {
    return { problems: [`the block holds secret key material: a private key must never go into a template or document; ${HOW_TO_EXPORT}`] };
  }
  const primaries = parsed.filter((p) => p.tag === TAG_PUBLIC_KEY);
  if (parsed.length === 0 || parsed[0].tag !== TAG_PUBLIC_KEY) return { problems: ['the block does not start with a public key packet'] };
  if (primaries.length !== 1) return { problems: [`the block holds ${primaries.length} primary keys; pin exactly one vendor key`] };
  const primary = primaries[0];
  if (primary.body[0] !== 4) return { problems: [`the primary key is OpenPGP version ${primary.body[0]}; rpm and gpgv on current hosts need version 4`] };
  const header = Buffer.from([0x99, (primary.body.length >> 8) & 0xff, primary.body.length & 0xff]);
  const fingerprint = crypto.createHash('sha1').update(header).update(primary.body).digest('hex').toUpperCase();
  return { armored: armor(data), fingerprint, problems: [] };
}
