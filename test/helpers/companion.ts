/*
 * A companion program as the install step writes it (companion-install.sh): its settings, its
 * body, and the SigV4 functions it shares with the install script, defined by `declare -f`
 * from the same fragments. Tests and the bench run it outside a host install, on a fake
 * host whose agent (service agentd, package agentd) the test sets.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { COMPANION_SHARED_FUNCTIONS, companionBody } from '../../lib/install/companion-script';

const SCRIPTS = path.join(__dirname, '..', '..', 'lib', 'install', 'scripts');

/** The settings at the top of an installed companion (see companion.sh). */
export interface CompanionSettings {
  readonly url: string;
  readonly identityUrl?: string;
  readonly region: string;
  readonly intervalSeconds: number;
  readonly dir: string;
  readonly spoolDir: string;
  readonly spoolMaxKb: number;
  readonly service: string;
  readonly packageName: string;
  readonly format: 'DEB' | 'RPM';
  readonly proxyUrl?: string;
  readonly kmsKeyArn?: string;
  readonly imdsUrl?: string;
  readonly s3Endpoint?: string;
}

const NAMES: ReadonlyArray<[keyof CompanionSettings, string]> = [
  ['url', 'COMPANION_URL'], ['identityUrl', 'COMPANION_IDENTITY_URL'], ['region', 'COMPANION_REGION'], ['intervalSeconds', 'COMPANION_INTERVAL'],
  ['kmsKeyArn', 'COMPANION_KMS_KEY'], ['spoolMaxKb', 'COMPANION_SPOOL_MAX_KB'],
  ['dir', 'COMPANION_DIR'], ['spoolDir', 'COMPANION_SPOOL'], ['service', 'COMPANION_SERVICE'], ['packageName', 'COMPANION_PACKAGE'],
  ['format', 'COMPANION_FORMAT'], ['proxyUrl', 'COMPANION_PROXY'], ['imdsUrl', 'COMPANION_IMDS'], ['s3Endpoint', 'COMPANION_S3_ENDPOINT'],
];

export function renderCompanionScript(settings: CompanionSettings): string {
  const quote = (value: string) => `'${value.replace(/'/g, '\'\\\'\'')}'`;
  const values: CompanionSettings = { imdsUrl: 'http://169.254.169.254', ...settings };
  const shared = spawnSync('bash', ['-c', 'source "$1"; source "$2"; shift 2; declare -f "$@"', 'bash',
    path.join(SCRIPTS, 'aws-request.sh'), path.join(SCRIPTS, 's3-download.sh'), ...COMPANION_SHARED_FUNCTIONS], { encoding: 'utf8' });
  if (shared.status !== 0) throw new Error(`declare -f failed: ${shared.stderr}`);
  return [
    '#!/usr/bin/env bash',
    ...NAMES.map(([key, name]) => `${name}=${quote(String(values[key] ?? ''))}`),
    `readonly ${NAMES.map(([, name]) => name).join(' ')}`,
    ...companionBody(),
    'aws_key_id=\'\' aws_secret=\'\' aws_token=\'\' aws_credentials_source=\'\'',
    shared.stdout.trimEnd(),
    'main "$@"',
    '',
  ].join('\n');
}

/**
 * A host the companion runs on outside a real one, in `dir`: the program, its directories, and
 * systemctl and dpkg-query as the companion asks them, answering from a file the test sets.
 */
export class FakeCompanionHost {
  public readonly program: string;
  public readonly state: string;
  public readonly spool: string;
  public readonly bin: string;
  /** More environment for the runs (a proxy the host's curl would use). */
  public env: Record<string, string> = {};

  constructor(private readonly dir: string) {
    this.program = path.join(dir, 'companion');
    this.state = path.join(dir, 'companion-dir');
    this.spool = path.join(dir, 'spool');
    this.bin = path.join(dir, 'bin');
    fs.mkdirSync(this.bin);
    fs.mkdirSync(this.spool);
    fs.writeFileSync(path.join(this.bin, 'systemctl'), [
      '#!/bin/bash',
      '[[ "$1 ${*: -1}" == "show agentd" ]] || exit 1',
      'state=$(<"$FAKE_HOST/service-state")',
      'sub=running; [[ $state == active ]] || sub=dead',
      'printf "LoadState=loaded\\nActiveState=%s\\nSubState=%s\\n" "$state" "$sub"',
    ].join('\n'), { mode: 0o755 });
    fs.writeFileSync(path.join(this.bin, 'dpkg-query'), '#!/bin/bash\n[[ "${*: -1}" == agentd ]] && printf "install ok installed 1:1.4.2-1"\n', { mode: 0o755 });
    this.service('active');
  }

  /** The agent's service as systemd reports it. */
  public service(active: 'active' | 'inactive' | 'failed'): void {
    fs.writeFileSync(path.join(this.dir, 'service-state'), active);
  }

  /** Writes the companion program with these settings (the host's directories, agentd's service and package). */
  public install(settings: Omit<CompanionSettings, 'dir' | 'spoolDir' | 'service' | 'packageName' | 'format'>): void {
    fs.writeFileSync(this.program, renderCompanionScript({
      ...settings, dir: this.state, spoolDir: this.spool, service: 'agentd', packageName: 'agentd', format: 'DEB',
    }), { mode: 0o755 });
  }

  /** Runs the companion as the timer would (`--now`: whether or not it is due). */
  public run(...args: string[]): Promise<CompanionRun> {
    return new Promise((resolve, reject) => {
      const child = spawn('bash', [this.program, ...args], {
        env: { ...this.env, PATH: `${this.bin}:/usr/bin:/bin`, LANG: 'C.UTF-8', FAKE_HOST: this.dir },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
      child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
      child.on('error', reject);
      child.on('close', (status) => {
        const last = stdout.trim().split('\n').pop() ?? '';
        try {
          resolve({ status, stderr, result: JSON.parse(last) });
        } catch {
          reject(new Error(`the companion printed no result (status ${status}): ${stdout}\n${stderr}`));
        }
      });
    });
  }
}

/** One run of the companion: its exit status, its log and its result line. */
export interface CompanionRun {
  readonly status: number | null;
  readonly stderr: string;
  readonly result: { outcome: string; httpStatus: string; nextRunInSeconds: number; signer: string };
}
