/*
 * A companion program as the install step writes it (companion-install.sh): its settings, its
 * body, and the SigV4 functions it shares with the install script, defined by `declare -f`
 * from the same fragments. Tests and the bench run it outside a host install.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { COMPANION_SHARED_FUNCTIONS, companionBody } from '../../lib/install/companion-script';

const SCRIPTS = path.join(__dirname, '..', '..', 'lib', 'install', 'scripts');

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

const NAMES: ReadonlyArray<[keyof CompanionSettings, string]> = [
  ['url', 'COMPANION_URL'], ['region', 'COMPANION_REGION'], ['intervalSeconds', 'COMPANION_INTERVAL'],
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
