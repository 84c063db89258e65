/*
 * Loopback stand-ins for the S3 download of the install script: an S3-compatible HTTPS server
 * that checks every request's SigV4 signature with an independent implementation
 * (@smithy/signature-v4), an instance metadata service that hands out instance profile
 * credentials, and a CONNECT proxy. Each records what it saw, for the tests to assert on.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as path from 'node:path';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';

export interface Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

/** What the S3 stand-in saw of one request. */
export interface S3Request {
  readonly path: string;
  readonly accessKeyId: string;
  /** 'ok', or the S3 error code it answered. */
  readonly verdict: string;
}

/** A test CA-less certificate for 127.0.0.1, made with openssl in `dir`. */
export function makeCertificate(dir: string): { key: string; cert: string; certFile: string } {
  const keyFile = path.join(dir, 'server.key');
  const certFile = path.join(dir, 'server.crt');
  const run = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyFile, '-out', certFile], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`openssl failed: ${run.stderr}`);
  return { key: fs.readFileSync(keyFile, 'utf8'), cert: fs.readFileSync(certFile, 'utf8'), certFile };
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
}

function close(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    if ('closeAllConnections' in server) (server as http.Server).closeAllConnections();
    server.close(() => resolve());
  });
}

/** RFC 3986 encoding of one path segment, as SigV4 wants it for S3 (an encoder of its own, not the script's). */
function encodeSegment(segment: string): string {
  return encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function errorXml(code: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${code}</Message></Error>`;
}

export class S3StandIn {
  public readonly requests: S3Request[] = [];
  /** Called while a request waits for its answer: the client is still running then. */
  public onRequest: () => void = () => {};
  private readonly objects = new Map<string, Buffer>();
  private readonly credentials = new Map<string, Credentials>();
  private server?: https.Server;
  public port = 0;

  constructor(private readonly tls: { key: string; cert: string }, public readonly region: string) {}

  public async start(): Promise<void> {
    this.server = https.createServer(this.tls, (req, res) => {
      void this.answer(req).then(([status, body]) => {
        res.writeHead(status, { 'content-type': status === 200 ? 'application/octet-stream' : 'application/xml' });
        res.end(body);
      });
    });
    this.port = await listen(this.server);
  }

  public async stop(): Promise<void> {
    if (this.server) await close(this.server);
  }

  public get endpoint(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  /** Credentials S3 (IAM) knows. */
  public allow(credentials: Credentials): void {
    this.credentials.set(credentials.accessKeyId, credentials);
  }

  public put(bucket: string, key: string, content: Buffer | string): void {
    this.objects.set(`${bucket}/${key}`, Buffer.from(content));
  }

  private async answer(req: http.IncomingMessage): Promise<[number, Buffer | string]> {
    const rawPath = (req.url ?? '/').split('?')[0];
    const objectPath = rawPath.split('/').map(decodeURIComponent).join('/').slice(1);
    const record = (accessKeyId: string, verdict: string): void => {
      this.requests.push({ path: objectPath, accessKeyId, verdict });
    };
    this.onRequest();
    const authorization = String(req.headers.authorization ?? '');
    const match = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/s3\/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$/.exec(authorization);
    if (req.method !== 'GET' || !match) {
      record('', 'AccessDenied');
      return [403, errorXml('AccessDenied')];
    }
    const [, accessKeyId, day, region, signedHeaders] = match;
    const known = this.credentials.get(accessKeyId);
    if (!known) {
      record(accessKeyId, 'InvalidAccessKeyId');
      return [403, errorXml('InvalidAccessKeyId')];
    }
    const amzDate = String(req.headers['x-amz-date'] ?? '');
    const signingDate = new Date(amzDate.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'));
    if (Number.isNaN(signingDate.getTime()) || !amzDate.startsWith(day) || Math.abs(Date.now() - signingDate.getTime()) > 15 * 60_000) {
      record(accessKeyId, 'RequestTimeTooSkewed');
      return [403, errorXml('RequestTimeTooSkewed')];
    }
    // Re-sign what the client says it signed, with the secret S3 knows, and compare.
    const headers: Record<string, string> = {};
    for (const name of signedHeaders.split(';')) {
      if (name === 'x-amz-date' || name === 'x-amz-security-token') continue; // the signer adds both
      headers[name] = String(req.headers[name] ?? '');
    }
    const signer = new SignatureV4({
      credentials: known, region: this.region, service: 's3', sha256: Hash.bind(null, 'sha256'), uriEscapePath: false, applyChecksum: false,
    });
    const expected = await signer.sign({
      method: 'GET', protocol: 'https:', hostname: '127.0.0.1', port: this.port,
      path: '/' + objectPath.split('/').map(encodeSegment).join('/'), query: {}, headers,
    }, { signingDate });
    const expectedAuthorization = String(expected.headers.authorization ?? expected.headers.Authorization);
    const tokenMatches = (known.sessionToken ?? '') === String(req.headers['x-amz-security-token'] ?? '');
    if (region !== this.region || expectedAuthorization !== authorization || !tokenMatches) {
      record(accessKeyId, 'SignatureDoesNotMatch');
      return [403, errorXml('SignatureDoesNotMatch')];
    }
    const object = this.objects.get(objectPath);
    if (!object) {
      record(accessKeyId, 'NoSuchKey');
      return [404, errorXml('NoSuchKey')];
    }
    record(accessKeyId, 'ok');
    return [200, object];
  }
}

/** An instance metadata service with IMDSv2 required and, optionally, an instance profile. */
export class ImdsStandIn {
  public readonly token: string;
  /** Paths asked for, with whether the right token came with them. */
  public readonly requests: Array<{ path: string; withToken: boolean }> = [];
  public onRequest: () => void = () => {};
  private server?: http.Server;
  public port = 0;

  constructor(token: string, private readonly profile?: { role: string; credentials: Credentials }) {
    this.token = token;
  }

  public async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      const url = req.url ?? '/';
      const withToken = req.headers['x-aws-ec2-metadata-token'] === this.token;
      this.requests.push({ path: url, withToken });
      this.onRequest();
      const send = (status: number, body = ''): void => {
        res.writeHead(status, { 'content-type': 'text/plain' });
        res.end(body);
      };
      if (!withToken) return send(401);
      const prefix = '/latest/meta-data/iam/security-credentials/';
      if (!this.profile || !url.startsWith(prefix)) return send(404);
      if (url === prefix) return send(200, `${this.profile.role}\n`);
      if (url !== prefix + this.profile.role) return send(404);
      const { credentials } = this.profile;
      return send(200, JSON.stringify({
        Code: 'Success', LastUpdated: new Date().toISOString(), Type: 'AWS-HMAC',
        AccessKeyId: credentials.accessKeyId, SecretAccessKey: credentials.secretAccessKey,
        Token: credentials.sessionToken, Expiration: new Date(Date.now() + 3600_000).toISOString(),
      }, null, 2));
    });
    this.port = await listen(this.server);
  }

  public get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  public async stop(): Promise<void> {
    if (this.server) await close(this.server);
  }
}

/** A CONNECT proxy that records the targets it tunnelled to. */
export class ConnectProxy {
  public readonly targets: string[] = [];
  private server?: http.Server;
  public port = 0;

  public async start(): Promise<void> {
    this.server = http.createServer((_req, res) => {
      res.writeHead(405);
      res.end();
    });
    this.server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
      const target = req.url ?? '';
      this.targets.push(target);
      const [host, port] = target.split(':');
      if (host !== '127.0.0.1') {
        client.end('HTTP/1.1 403 Forbidden\r\n\r\n');
        return;
      }
      const upstream = net.connect(Number(port), host, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    });
    this.port = await listen(this.server);
  }

  public get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  public async stop(): Promise<void> {
    if (this.server) await close(this.server);
  }
}

/**
 * Every process's argv and environment that contain one of `needles`, as "pid name: where".
 * Also returns how many processes named `name` were seen, to prove the scan saw the client.
 */
export function scanProcesses(needles: string[], name: string): { leaks: string[]; seen: number } {
  const leaks: string[] = [];
  let seen = 0;
  for (const pid of fs.readdirSync('/proc').filter((entry) => /^\d+$/.test(entry))) {
    let cmdline: Buffer;
    let environ: Buffer;
    try {
      cmdline = fs.readFileSync(`/proc/${pid}/cmdline`);
      environ = fs.readFileSync(`/proc/${pid}/environ`);
    } catch {
      continue; // gone, or not ours to read
    }
    const argv = cmdline.toString('utf8').split('\0');
    if (path.basename(argv[0] ?? '') === name) seen++;
    for (const needle of needles.filter(Boolean)) {
      if (cmdline.includes(needle)) leaks.push(`${pid} ${argv[0]}: argv`);
      if (environ.includes(needle)) leaks.push(`${pid} ${argv[0]}: environment`);
    }
  }
  return { leaks, seen };
}
