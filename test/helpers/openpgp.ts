/*
 * Throwaway OpenPGP vendor keys for the tests: gpg in a GNUPGHOME of its own (removed by
 * dispose, with its agent), rpmsign for RPM header signatures, detached signatures for .deb.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export class TestSigner {
  public readonly home: string;
  private readonly env: NodeJS.ProcessEnv;

  constructor(parent: string = os.tmpdir()) {
    fs.mkdirSync(parent, { recursive: true });
    this.home = fs.mkdtempSync(path.join(parent, 'issue10-packages-gnupg-'));
    fs.chmodSync(this.home, 0o700);
    this.env = { ...process.env, GNUPGHOME: this.home };
  }

  private gpg(args: string[]): string {
    return execFileSync('gpg', ['--batch', '--pinentry-mode', 'loopback', '--passphrase', '', ...args], { env: this.env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** Makes a signing key for `email`; returns its fingerprint. */
  public generate(email: string): string {
    this.gpg(['--quick-gen-key', `Test vendor <${email}>`, 'rsa2048', 'sign', 'never']);
    const listing = this.gpg(['--with-colons', '--list-keys', email]);
    return /^fpr:+([0-9A-F]{40}):/m.exec(listing)![1];
  }

  public publicKey(email: string): string {
    return this.gpg(['--armor', '--export', email]);
  }

  public privateKey(email: string): string {
    return this.gpg(['--armor', '--export-secret-keys', email]);
  }

  /** Adds an RPM header signature (rpmsign) made with `email`'s key, in place. */
  public signRpm(file: string, email: string): void {
    execFileSync('rpmsign', ['--define', '__gpg /usr/bin/gpg', '--define', `_gpg_name ${email}`, '--define', `_gpg_path ${this.home}`,
      '--define', '_gpg_sign_cmd_extra_args --batch --pinentry-mode loopback --passphrase ""', '--addsign', file],
    { env: this.env, stdio: 'ignore' });
  }

  /** A detached signature of `file` made with `email`'s key, written to `to` (armored when it ends .asc). */
  public detachSign(file: string, email: string, to: string): void {
    this.gpg(['--local-user', email, ...(to.endsWith('.asc') ? ['--armor'] : []), '--output', to, '--detach-sign', file]);
  }

  public dispose(): void {
    try {
      execFileSync('gpgconf', ['--kill', 'gpg-agent'], { env: this.env, stdio: 'ignore' });
    } catch {
      // no agent was started
    }
    fs.rmSync(this.home, { recursive: true, force: true });
  }
}
