/*
 * The host companion's program (scripts/companion.sh with the SigV4 signer and the spool
 * upload inlined) and how the install document carries it: gzip + base64 in one quoted
 * variable, which the install step decodes with coreutils' base64 and gzip (no heredoc).
 */
import { gzipSync } from 'node:zlib';
import { scriptFragment } from './install-scripts';

/** The settings at the top of an installed companion (see companion.sh). */
export interface CompanionSettings {
  readonly url: string;
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

/** Where the companion lives on a Linux host. */
export const COMPANION_PATHS = {
  program: '/usr/local/libexec/cdk-agent-fleet/companion',
  dir: '/var/lib/cdk-agent-fleet-companion',
  spool: '/var/spool/cdk-agent-fleet',
  unit: 'cdk-agent-fleet-companion',
} as const;

/** The settings' variable names, in the order the header lists them. */
const NAMES: ReadonlyArray<[keyof CompanionSettings, string]> = [
  ['url', 'COMPANION_URL'], ['region', 'COMPANION_REGION'], ['intervalSeconds', 'COMPANION_INTERVAL'],
  ['dir', 'COMPANION_DIR'], ['spoolDir', 'COMPANION_SPOOL'], ['spoolMaxKb', 'COMPANION_SPOOL_MAX_KB'],
  ['service', 'COMPANION_SERVICE'], ['packageName', 'COMPANION_PACKAGE'], ['format', 'COMPANION_FORMAT'],
  ['proxyUrl', 'COMPANION_PROXY'], ['kmsKeyArn', 'COMPANION_KMS_KEY'], ['imdsUrl', 'COMPANION_IMDS'],
  ['s3Endpoint', 'COMPANION_S3_ENDPOINT'],
];

/** The program after its settings: the companion's body, then its function fragments. */
export function companionBody(): string[] {
  const [, ...body] = scriptFragment('companion.sh');
  return [...body, ...scriptFragment('aws-request.sh'), ...scriptFragment('s3-download.sh'), ...scriptFragment('companion-spool.sh'), 'main "$@"'];
}

/** A whole companion program with its settings (tests and the bench run it as is). */
export function renderCompanionScript(settings: CompanionSettings): string {
  const quote = (value: string) => `'${value.replace(/'/g, '\'\\\'\'')}'`;
  const values: CompanionSettings = { imdsUrl: 'http://169.254.169.254', ...settings };
  const header = NAMES.map(([key, name]) => `${name}=${quote(String(values[key] ?? ''))}`);
  return ['#!/usr/bin/env bash', ...header, `readonly ${NAMES.map(([, name]) => name).join(' ')}`, ...companionBody(), ''].join('\n');
}

/**
 * The companion's body as one base64 line of gzip, for the install script. The gzip header's
 * operating-system byte is set to "unknown" so that every platform renders the same document.
 */
export function companionBodyBase64(): string {
  const gz = gzipSync(Buffer.from(companionBody().join('\n') + '\n', 'utf8'), { level: 9 });
  gz[9] = 0xff;
  return gz.toString('base64');
}
