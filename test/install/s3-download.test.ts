/*
 * The Linux script's S3 download (lib/install/scripts/s3-download.sh) run for real under bash
 * with the host's curl, against loopback servers: an S3 stand-in that checks each SigV4
 * signature with @smithy/signature-v4, an instance metadata service with an instance profile,
 * the shared credentials file the SSM Agent writes under Default Host Management, and a proxy.
 */
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { ConnectProxy, Credentials, ImdsStandIn, makeCertificate, S3StandIn, scanProcesses } from './s3-servers';
import { AgentPackage, PackageFormat } from '../../lib';
import { renderLinuxScript } from '../../lib/install/install-scripts';

const SIGNER = path.join(__dirname, '../../lib/install/scripts/aws-request.sh');
const FRAGMENT = path.join(__dirname, '../../lib/install/scripts/s3-download.sh');
const REGION = 'eu-west-1';
const BUCKET = 'agent-packages';
const KEY = 'agent/1.2.3/agent_1.2.3_amd64.deb';
const CONTENT = crypto.randomBytes(256 * 1024);

function randomCredentials(prefix: string): Required<Credentials> {
  return {
    accessKeyId: `${prefix}${crypto.randomBytes(8).toString('hex').toUpperCase()}`,
    secretAccessKey: crypto.randomBytes(30).toString('base64'),
    sessionToken: crypto.randomBytes(90).toString('base64'),
  };
}

/** The shared credentials file the SSM Agent writes (gopkg.in/ini, pretty format). */
function agentCredentialsFile(file: string, credentials: Required<Credentials>): void {
  fs.writeFileSync(file, [
    '[default]',
    `aws_access_key_id     = ${credentials.accessKeyId}`,
    `aws_secret_access_key = ${credentials.secretAccessKey}`,
    `aws_session_token     = ${credentials.sessionToken}`,
    '',
  ].join('\n'), { mode: 0o600 });
}

interface Run {
  readonly status: number | null;
  readonly stderr: string;
  readonly exported: string;
  readonly workdirLeft: string[];
}

let dir: string;
let certFile: string;
let s3Server: S3StandIn;
const instanceProfile = randomCredentials('ASIAINSTANCEPROFILE');
const hostManagement = randomCredentials('ASIADEFAULTHOSTMGMT');
const imdsToken = crypto.randomBytes(40).toString('base64');
const secrets = [instanceProfile.secretAccessKey, instanceProfile.sessionToken, hostManagement.secretAccessKey, hostManagement.sessionToken, imdsToken];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'issue9-windows-s3-'));
  const tls = makeCertificate(dir);
  certFile = tls.certFile;
  s3Server = new S3StandIn(tls, REGION);
  s3Server.allow(instanceProfile);
  s3Server.allow(hostManagement);
  s3Server.put(BUCKET, KEY, CONTENT);
  s3Server.put(BUCKET, 'agent/odd name+1.deb', CONTENT);
  await s3Server.start();
});

afterAll(async () => {
  await s3Server.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/**
 * Sources the fragment in bash with the globals install-agent.sh gives it, and downloads.
 * No secret reaches bash through its argv or environment: the IMDS token is in a 0600 file.
 */
async function download(imds: ImdsStandIn | undefined, options: { env?: Record<string, string>; key?: string; dest?: string } = {}): Promise<Run> {
  const workdir = fs.mkdtempSync(path.join(dir, 'work-'));
  fs.chmodSync(workdir, 0o700);
  const headerFile = path.join(workdir, 'imds-header');
  fs.writeFileSync(headerFile, `X-aws-ec2-metadata-token: ${imdsToken}\n`, { mode: 0o600 });
  const dest = options.dest ?? path.join(workdir, 'agent.pkg');
  const script = `
set -Eeuo pipefail
umask 077
log() { printf '%s\\n' "$*" >&2; }
IMDS='${imds?.url ?? 'http://127.0.0.1:9'}'
imds_version='${imds ? 'v2' : 'none'}'
imds_header_file='${headerFile}'
workdir='${workdir}'
AGENT_S3_ENDPOINT='${s3Server.endpoint}'
source '${SIGNER}'
source '${FRAGMENT}'
status=0
s3_download 's3://${BUCKET}/${options.key ?? KEY}' '${REGION}' '${dest}' || status=$?
export -p > '${path.join(dir, 'exported')}'
exit "$status"
`;
  const child = spawn('/bin/bash', ['-c', script], {
    env: { PATH: '/usr/bin:/bin', HOME: dir, CURL_CA_BUNDLE: certFile, ...options.env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const workdirLeft = fs.readdirSync(workdir).filter((name) => name !== 'imds-header' && name !== 'agent.pkg');
  return { status, stderr, exported: fs.readFileSync(path.join(dir, 'exported'), 'utf8'), workdirLeft };
}

async function withImds<T>(imds: ImdsStandIn, body: () => Promise<T>): Promise<T> {
  await imds.start();
  try {
    return await body();
  } finally {
    await imds.stop();
  }
}

describe('S3 packages without the AWS CLI: a SigV4-signed GET from the script', () => {
  beforeEach(() => { s3Server.requests.length = 0; });

  test('instance profile: signs with the role the metadata service hands out (IMDSv2 token from the header file)', async () => {
    // GIVEN an instance profile and no Default Host Management credentials
    const imds = new ImdsStandIn(imdsToken, { role: 'agent-instance-role', credentials: instanceProfile });
    const dest = path.join(dir, 'profile.pkg');

    // WHEN
    const run = await withImds(imds, () => download(imds, { dest }));

    // THEN the signature S3 checked is the instance profile's, and the object arrived whole
    expect(run.stderr).toContain('signed with the instance profile role agent-instance-role');
    expect(run.status).toBe(0);
    expect(s3Server.requests).toEqual([{ path: `${BUCKET}/${KEY}`, accessKeyId: instanceProfile.accessKeyId, verdict: 'ok' }]);
    expect(fs.readFileSync(dest).equals(CONTENT)).toBe(true);
    expect(imds.requests.map((r) => r.path)).toEqual([
      '/latest/meta-data/iam/security-credentials/', '/latest/meta-data/iam/security-credentials/agent-instance-role',
    ]);
    expect(imds.requests.every((r) => r.withToken)).toBe(true);
    // Credentials and signed headers do not outlive the request.
    expect(run.workdirLeft).toEqual([]);
  });

  test('Default Host Management: signs with the credentials file the SSM Agent passes in AWS_SHARED_CREDENTIALS_FILE, with no instance profile', async () => {
    const credentialsFile = path.join(dir, 'dhmc-credentials');
    agentCredentialsFile(credentialsFile, hostManagement);
    const imds = new ImdsStandIn(imdsToken); // no instance profile: 404
    const dest = path.join(dir, 'dhmc.pkg');

    const run = await withImds(imds, () => download(imds, { dest, env: { AWS_SHARED_CREDENTIALS_FILE: credentialsFile } }));

    expect(run.status).toBe(0);
    expect(run.stderr).toContain(`signed with the Default Host Management credentials the SSM Agent shared (${credentialsFile}, profile default)`);
    expect(s3Server.requests).toEqual([{ path: `${BUCKET}/${KEY}`, accessKeyId: hostManagement.accessKeyId, verdict: 'ok' }]);
    expect(fs.readFileSync(dest).equals(CONTENT)).toBe(true);
    expect(imds.requests).toEqual([]); // the file is enough: the metadata service is not asked
  });

  test('both at hand: the credentials the SSM Agent runs under win, as in the AWS SDKs\' chain', async () => {
    const credentialsFile = path.join(dir, 'dhmc-credentials-both');
    agentCredentialsFile(credentialsFile, hostManagement);
    const imds = new ImdsStandIn(imdsToken, { role: 'agent-instance-role', credentials: instanceProfile });

    const run = await withImds(imds, () => download(imds, { env: { AWS_SHARED_CREDENTIALS_FILE: credentialsFile } }));

    expect(run.status).toBe(0);
    expect(s3Server.requests.map((r) => r.accessKeyId)).toEqual([hostManagement.accessKeyId]);
  });

  test('no credentials at all: a clear reason, and no request to S3', async () => {
    const imds = new ImdsStandIn(imdsToken);

    const run = await withImds(imds, () => download(imds));

    expect(run.status).toBe(1);
    expect(run.stderr).toContain('the instance has no instance profile');
    expect(run.stderr).toContain('no AWS credentials to read s3://agent-packages/agent/1.2.3/agent_1.2.3_amd64.deb');
    expect(s3Server.requests).toEqual([]);
  });

  test('a wrong secret is refused by the independent signature check, and the script says what S3 answered', async () => {
    const credentialsFile = path.join(dir, 'wrong-secret');
    agentCredentialsFile(credentialsFile, { ...hostManagement, secretAccessKey: randomCredentials('X').secretAccessKey });
    const dest = path.join(dir, 'wrong.pkg');

    const run = await download(undefined, { dest, env: { AWS_SHARED_CREDENTIALS_FILE: credentialsFile } });

    expect(run.status).toBe(1);
    expect(s3Server.requests).toEqual([{ path: `${BUCKET}/${KEY}`, accessKeyId: hostManagement.accessKeyId, verdict: 'SignatureDoesNotMatch' }]);
    expect(run.stderr).toContain('S3 answered 403 SignatureDoesNotMatch for s3://agent-packages/');
    expect(fs.existsSync(dest)).toBe(false);
  });

  test('keys with characters that need encoding are signed the way S3 encodes them', async () => {
    const credentialsFile = path.join(dir, 'dhmc-odd');
    agentCredentialsFile(credentialsFile, hostManagement);

    const run = await download(undefined, { key: 'agent/odd name+1.deb', env: { AWS_SHARED_CREDENTIALS_FILE: credentialsFile } });

    expect(run.stderr).not.toContain('S3 answered');
    expect(s3Server.requests).toEqual([{ path: `${BUCKET}/agent/odd name+1.deb`, accessKeyId: hostManagement.accessKeyId, verdict: 'ok' }]);
    expect(run.status).toBe(0);
  });

  test('the proxy in https_proxy carries the S3 request; the metadata service is never proxied', async () => {
    const proxy = new ConnectProxy();
    await proxy.start();
    const imds = new ImdsStandIn(imdsToken, { role: 'agent-instance-role', credentials: instanceProfile });
    try {
      const run = await withImds(imds, () => download(imds, { env: { https_proxy: proxy.url, http_proxy: proxy.url } }));
      expect(run.status).toBe(0);
      expect(proxy.targets).toEqual([`127.0.0.1:${s3Server.port}`]);
      expect(imds.requests).toHaveLength(2);
    } finally {
      await proxy.stop();
    }
  });

  test('the process scan finds a secret in argv or environment (control)', async () => {
    const needle = crypto.randomBytes(12).toString('hex');
    // Its own process group, no pipes: killing bash alone would leave sleep holding the worker's pipes for 30 s.
    const child = spawn('/bin/bash', ['-c', 'sleep 30; exit 0', needle], { env: { PATH: '/usr/bin:/bin', LEAK: needle }, detached: true, stdio: 'ignore' });
    try {
      await new Promise((resolve) => child.on('spawn', resolve));
      await new Promise((resolve) => setTimeout(resolve, 200));
      const { leaks, seen } = scanProcesses([needle], 'sleep');
      expect(seen).toBeGreaterThanOrEqual(1);
      expect(leaks).toEqual([`${child.pid} /bin/bash: argv`, `${child.pid} /bin/bash: environment`, expect.stringMatching(/ sleep: environment$/)]);
    } finally {
      const exited = new Promise((resolve) => child.on('exit', resolve));
      process.kill(-child.pid!, 'SIGKILL');
      await exited;
    }
  });

  test('no secret key, session token or IMDS token in the argv or environment of any process, while the servers stall', async () => {
    // GIVEN servers that look at every process while the script's curl waits for them
    const scans: Array<{ leaks: string[]; seen: number }> = [];
    const imds = new ImdsStandIn(imdsToken, { role: 'agent-instance-role', credentials: instanceProfile });
    imds.onRequest = () => scans.push(scanProcesses(secrets, 'curl'));
    s3Server.onRequest = () => scans.push(scanProcesses(secrets, 'curl'));
    const credentialsFile = path.join(dir, 'dhmc-scan');
    agentCredentialsFile(credentialsFile, hostManagement);

    try {
      // WHEN both kinds of credentials are used
      const profileRun = await withImds(imds, () => download(imds));
      const dhmcRun = await download(undefined, { env: { AWS_SHARED_CREDENTIALS_FILE: credentialsFile } });

      // THEN the scans ran while curl was alive, and found nothing
      expect(profileRun.status).toBe(0);
      expect(dhmcRun.status).toBe(0);
      expect(scans).toHaveLength(4); // two metadata requests, two S3 requests
      expect(scans.every((scan) => scan.seen >= 1)).toBe(true);
      expect(scans.flatMap((scan) => scan.leaks)).toEqual([]);
      // nothing the script exported carries one either, and its log never shows one
      for (const secret of secrets) {
        expect(profileRun.exported).not.toContain(secret);
        expect(dhmcRun.exported).not.toContain(secret);
        expect(profileRun.stderr + dhmcRun.stderr).not.toContain(secret);
      }
    } finally {
      s3Server.onRequest = () => {};
    }
  });
});

describe('the rendered Linux script', () => {
  test('inlines the request signer and the S3 download functions after the settings header, and uses them for s3:// packages', () => {
    const stack = new Stack(new App(), 'Stack', { env: { region: REGION } });
    const deb = AgentPackage.fromBucket(s3.Bucket.fromBucketName(stack, 'Packages', BUCKET), KEY, {
      format: PackageFormat.DEB, architecture: ec2.InstanceArchitecture.X86_64, sha256: 'a'.repeat(64), version: '1.2.3', serviceName: 'agent',
    });

    const lines = renderLinuxScript([deb]);

    // the fragments' code, in order, without their comments, blank lines and indentation (the document keeps only code and directives)
    const fragment = [SIGNER, FRAGMENT].flatMap((file) => fs.readFileSync(file, 'utf8').trimEnd().split('\n')
      .filter((line) => !/^\s*#/.test(line) && line.trim() !== '').map((line) => line.trimStart()));
    const start = lines.indexOf(fragment[0]);
    expect(start).toBeGreaterThan(lines.indexOf('# --- end of settings ---'));
    expect(lines.slice(start, start + fragment.length)).toEqual(fragment);
    expect(lines).toContain("AGENT_S3_ENDPOINT=''");
    expect(lines).toContain('s3://*) s3_download "$source" "$region" "$1" ;;');
    expect(lines.join('\n')).not.toMatch(/\baws s3\b/);
    // Comments stay in the source (SSM documents are limited to 64 KB); directives stay in the document.
    expect(lines.filter((line) => /^\s*#/.test(line)).filter((line) => !/^(#!|\s*# shellcheck |# --- )/.test(line))).toEqual([]);
  });
});
