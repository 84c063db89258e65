import * as fs from 'node:fs';
import { Token } from 'aws-cdk-lib';
import { describeOpenPgpPublicKey } from './openpgp-armor';

/**
 * What kind of signature a signing key checks.
 */
export enum SigningKeyType {
  /** An OpenPGP public key: RPM header signatures, detached signatures of Debian packages. */
  OPENPGP = 'OPENPGP',
  /** An Authenticode publisher: signed Windows Installer packages. */
  AUTHENTICODE = 'AUTHENTICODE',
}

/**
 * Options of an OpenPGP signing key.
 */
export interface OpenPgpKeyOptions {
  /**
   * The fingerprint the key's primary key must have, as the vendor publishes it (40
   * hexadecimal characters; spaces allowed). The synth fails when the file holds another key,
   * so a swapped key file cannot widen the pin unnoticed.
   *
   * @default - not checked
   */
  readonly fingerprint?: string;
}

/**
 * The Authenticode signer a Windows Installer package must be signed by.
 */
export interface AuthenticodePublisherOptions {
  /**
   * The SHA-1 thumbprint of the signer's certificate (40 hexadecimal characters), as
   * `(Get-AuthenticodeSignature <file>).SignerCertificate.Thumbprint` shows it.
   *
   * @default - not checked (then `subject` is required)
   */
  readonly thumbprint?: string;

  /**
   * The signer certificate's subject, exactly as
   * `(Get-AuthenticodeSignature <file>).SignerCertificate.Subject` shows it, e.g.
   * `CN=Example Corp, O=Example Corp, L=Seattle, S=Washington, C=US`.
   *
   * @default - not checked (then `thumbprint` is required)
   */
  readonly subject?: string;
}

/**
 * A vendor's package signing key, pinned at synth and baked into the install document. A
 * package pinned by a key installs any build the key signed, so a newer vendor build
 * installs without a new deployment; a build whose signature does not verify installs
 * nothing (`signature-mismatch`). Keys are never fetched at run time.
 */
export class PackageSigningKey {
  /**
   * An ASCII-armored OpenPGP public key (`gpg --armor --export <fingerprint>`), read at synth.
   * For RPM packages (checked with `rpmkeys` against this key only) and Debian packages with
   * a detached signature (checked with `gpgv` against this key only).
   *
   * @param file path of the `.asc` file
   * @param options the fingerprint to expect
   */
  public static fromFile(file: string, options: OpenPgpKeyOptions = {}): PackageSigningKey {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (error) {
      throw new Error(`PackageSigningKey.fromFile: cannot read ${JSON.stringify(file)}: ${(error as Error).message}`, { cause: error });
    }
    return PackageSigningKey.fromArmoredKey(text, options);
  }

  /**
   * An ASCII-armored OpenPGP public key given as text (`-----BEGIN PGP PUBLIC KEY BLOCK-----`).
   *
   * @param armoredKey the armored key
   * @param options the fingerprint to expect
   */
  public static fromArmoredKey(armoredKey: string, options: OpenPgpKeyOptions = {}): PackageSigningKey {
    const parsed = describeOpenPgpPublicKey(armoredKey);
    const problems = [...parsed.problems];
    const expected = options.fingerprint?.replace(/\s+/g, '').toUpperCase();
    if (expected !== undefined && parsed.fingerprint !== undefined && expected !== parsed.fingerprint) {
      problems.push(`the key's fingerprint is ${parsed.fingerprint}, not the expected ${expected}`);
    }
    return new PackageSigningKey(SigningKeyType.OPENPGP, { armoredKey: parsed.armored, fingerprint: parsed.fingerprint, problems });
  }

  /**
   * An Authenticode publisher for MSI packages: the signature must be valid
   * (`Get-AuthenticodeSignature` status `Valid`, a chain Windows trusts) and made by this
   * certificate (thumbprint) and/or subject.
   *
   * @param options the signer certificate's thumbprint and/or subject
   */
  public static authenticodePublisher(options: AuthenticodePublisherOptions): PackageSigningKey {
    const problems: string[] = [];
    const thumbprint = options.thumbprint?.replace(/\s+/g, '').toUpperCase();
    if (thumbprint === undefined && options.subject === undefined) {
      problems.push('give a thumbprint, a subject or both');
    }
    if (thumbprint !== undefined && !Token.isUnresolved(thumbprint) && !/^[0-9A-F]{40}$/.test(thumbprint)) {
      problems.push(`thumbprint ${JSON.stringify(options.thumbprint)} is not 40 hexadecimal characters (a SHA-1 thumbprint)`);
    }
    if (options.subject !== undefined && (Token.isUnresolved(options.subject) || !/^[A-Za-z0-9][A-Za-z0-9 .,=&()+@_-]{0,511}$/.test(options.subject))) {
      problems.push(`subject ${JSON.stringify(options.subject)} must be a distinguished name known at synth: letters, digits, spaces and .,=&()+@_- (no quotes)`);
    }
    return new PackageSigningKey(SigningKeyType.AUTHENTICODE, { thumbprint, subject: options.subject, problems });
  }

  /** What kind of signature this key checks. */
  public readonly keyType: SigningKeyType;
  /** The OpenPGP key, re-armored without comments (what the document carries). */
  public readonly armoredKey?: string;
  /** The OpenPGP primary key's fingerprint, 40 upper-case hexadecimal characters. */
  public readonly fingerprint?: string;
  /** The Authenticode signer certificate's thumbprint, upper case. */
  public readonly thumbprint?: string;
  /** The Authenticode signer certificate's subject. */
  public readonly subject?: string;
  /**
   * What is wrong with the key as given (reported by `AgentInstallDocument` with the
   * package's prop path). Empty when the key is usable.
   */
  public readonly problems: string[];

  private constructor(type: SigningKeyType, fields: { armoredKey?: string; fingerprint?: string; thumbprint?: string; subject?: string; problems: string[] }) {
    this.keyType = type;
    this.armoredKey = fields.armoredKey;
    this.fingerprint = fields.fingerprint;
    this.thumbprint = fields.thumbprint;
    this.subject = fields.subject;
    this.problems = fields.problems;
  }
}
