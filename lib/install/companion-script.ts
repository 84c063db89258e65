/*
 * The host companion's program (scripts/companion.sh and its spool upload) and how the install
 * document carries it: gzip + base64 in one quoted variable, which the install step decodes
 * with coreutils' base64 and gzip (no heredoc), then appends the SigV4 functions it shares.
 */
import { gzipSync } from 'node:zlib';
import { scriptFragment } from './install-scripts';

/**
 * Functions of aws-request.sh and s3-download.sh the companion calls. The install script has
 * them already: it appends their definitions (`declare -f`) to the program rather than
 * carrying a second copy in the document, which is limited to 64 KB.
 */
export const COMPANION_SHARED_FUNCTIONS = [
  'aws_sha256', 'aws_hex', 'aws_hmac', 'aws_escapes', 'aws_imds_get', 'aws_imds_connect', 'aws_json_field',
  'aws_instance_profile_credentials', 'aws_forget_credentials', 'aws_sign_request', 's3_uri_encode',
] as const;

/** The companion's own code, after its settings: companion.sh and its spool upload. */
export function companionBody(): string[] {
  const [, ...body] = scriptFragment('companion.sh');
  return [...body, ...scriptFragment('companion-spool.sh')];
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

/** What the install script needs to install the companion. */
export interface CompanionInstallSettings {
  readonly heartbeatUrl: string;
  readonly identityHeartbeatUrl?: string;
  readonly region: string;
  readonly intervalSeconds: number;
  readonly telemetryKeyArn?: string;
  readonly spoolMaxKb: number;
}

/** The install script's companion settings. */
export function companionInstallSettings(companion: CompanionInstallSettings, quote: (value: string) => string): string[] {
  return [
    `COMPANION_URL=${quote(companion.heartbeatUrl ?? '')}`,
    `COMPANION_IDENTITY_URL=${quote(companion.identityHeartbeatUrl ?? '')}`,
    `COMPANION_REGION=${quote(companion.region ?? '')}`,
    `COMPANION_INTERVAL=${quote(String(companion.intervalSeconds))}`,
    `COMPANION_KMS_KEY=${quote(companion.telemetryKeyArn ?? '')}`,
    `COMPANION_SPOOL_MAX_KB=${quote(String(companion.spoolMaxKb))}`,
    `COMPANION_PROGRAM=${quote(companionBodyBase64())}`,
    `COMPANION_FUNCTIONS=${quote(COMPANION_SHARED_FUNCTIONS.join(' '))}`,
    '# shellcheck disable=SC2034 # read through ${!name} by companion_install',
    'readonly COMPANION_URL COMPANION_IDENTITY_URL COMPANION_REGION COMPANION_INTERVAL COMPANION_KMS_KEY COMPANION_SPOOL_MAX_KB COMPANION_PROGRAM COMPANION_FUNCTIONS',
  ];
}
