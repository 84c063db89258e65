/*
 * What the host companion costs the host: CPU time (user + system, the program and every
 * process it starts) and peak memory (the largest single process: GNU time's %M, from
 * getrusage of the waited children) of one run, measured with /usr/bin/time against loopback
 * stand-ins (test IMDS, a SigV4-verifying front door answering like the backend). Side by side:
 * the timer's per-minute start when no heartbeat is due, a heartbeat run where curl signs
 * (--aws-sigv4, 7.88+), one where bash signs (older curl), one of an instance without a role
 * (the signed identity document, JSON-escaped in bash), and one bare curl request.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FrontDoor, InstanceMetadata, instanceSession } from '../test/e2e/front-door';
import { renderCompanionScript } from '../test/helpers/companion';

const RUNS = 5;
const REGION = 'eu-west-1';
const INSTANCE = 'i-0be0c0ffee0000001';

interface Cost { cpuMs: number; peakKb: number; out: string }

function timed(command: string[], env: Record<string, string>): Promise<Cost> {
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-f', 'TIME %U %S %M', ...command], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { err += c.toString(); });
    child.on('error', reject);
    child.on('close', () => {
      const m = /TIME ([\d.]+) ([\d.]+) (\d+)/.exec(err);
      if (!m) return reject(new Error(`no figures: ${err}`));
      resolve({ cpuMs: (Number(m[1]) + Number(m[2])) * 1000, peakKb: Number(m[3]), out });
    });
  });
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

export async function run(): Promise<void> {
  if (!fs.existsSync('/usr/bin/time')) {
    console.log('skipped: /usr/bin/time (GNU time) is not installed');
    return;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'companion-bench-'));
  const session = instanceSession('111122223333', INSTANCE);
  const imds = new InstanceMetadata(session, {
    accountId: '111122223333', architecture: 'x86_64', availabilityZone: `${REGION}a`, imageId: 'ami-0123456789abcdef0',
    instanceId: INSTANCE, instanceType: 'm7i.large', region: REGION,
  });
  const answer = JSON.stringify({ instanceId: INSTANCE, nextHeartbeatSeconds: 600, telemetryBucket: 'b', telemetryPrefix: `agents/AROA:${INSTANCE}/`, sensors: { PACKAGE_INVENTORY: 'ENABLED' }, instructions: [] });
  const answered = async () => ({ statusCode: 200, headers: { 'content-type': 'application/json' }, body: answer });
  const door = new FrontDoor(REGION, answered, { handler: answered, accountId: '111122223333', vpceId: 'vpce-0123456789abcdef0' });
  door.allow(session);
  // The same instance without a role: IMDS serves the document's signature (256 bytes, base64 in lines of 64).
  const noRole = new InstanceMetadata(session, imds.identity);
  noRole.role = false;
  noRole.signature = Buffer.alloc(256, 7).toString('base64').replace(/.{64}/g, '$&\n');
  await Promise.all([imds.start(), noRole.start(), door.start()]);
  try {
    const bin = path.join(dir, 'bin');
    fs.mkdirSync(bin);
    fs.writeFileSync(path.join(bin, 'systemctl'), '#!/bin/sh\nprintf "LoadState=loaded\\nActiveState=active\\nSubState=running\\n"\n', { mode: 0o755 });
    fs.writeFileSync(path.join(bin, 'dpkg-query'), '#!/bin/sh\nprintf "install ok installed 1.4.2-1"\n', { mode: 0o755 });
    const program = path.join(dir, 'companion');
    fs.writeFileSync(program, renderCompanionScript({
      url: door.url, region: REGION, intervalSeconds: 600, dir: path.join(dir, 'state'), spoolDir: path.join(dir, 'spool'), spoolMaxKb: 1024,
      service: 'agentd', packageName: 'agentd', format: 'DEB', imdsUrl: imds.url,
    }), { mode: 0o755 });
    const identityProgram = path.join(dir, 'companion-identity');
    fs.writeFileSync(identityProgram, renderCompanionScript({
      url: door.url, identityUrl: door.identityUrl, region: REGION, intervalSeconds: 600, dir: path.join(dir, 'state-identity'), spoolDir: path.join(dir, 'spool'),
      spoolMaxKb: 1024, service: 'agentd', packageName: 'agentd', format: 'DEB', imdsUrl: noRole.url,
    }), { mode: 0o755 });
    const env = { PATH: `${bin}:/usr/bin:/bin`, LANG: 'C.UTF-8' };

    // A curl that says it is older than 7.88, so that the companion signs in bash.
    const oldBin = path.join(dir, 'old-curl');
    fs.mkdirSync(oldBin);
    fs.writeFileSync(path.join(oldBin, 'curl'), '#!/bin/bash\nif [[ "$1" == --version ]]; then echo "curl 7.81.0"; exit 0; fi\nexec /usr/bin/curl "$@"\n', { mode: 0o755 });
    const oldEnv = { ...env, PATH: `${oldBin}:${env.PATH}` };

    const heartbeat: Cost[] = [];
    const bashSigned: Cost[] = [];
    const identitySent: Cost[] = [];
    const notDue: Cost[] = [];
    for (let i = 0; i < RUNS; i++) {
      heartbeat.push(await timed(['bash', program, '--now'], env));
      bashSigned.push(await timed(['bash', program, '--now'], oldEnv));
      identitySent.push(await timed(['bash', identityProgram, '--now'], env));
      notDue.push(await timed(['bash', program], env));
    }
    if (!identitySent.every((c) => c.out.includes('"outcome":"sent"') && c.out.includes('"signer":"identity-document"'))) throw new Error('a run without a role did not send its identity document');
    if (!heartbeat.every((c) => c.out.includes('"outcome":"sent"') && c.out.includes('"signer":"curl"'))) throw new Error('a heartbeat run did not send, signed by curl');
    if (!bashSigned.every((c) => c.out.includes('"outcome":"sent"') && c.out.includes('"signer":"bash"'))) throw new Error('a heartbeat run did not send, signed by bash');

    // The same POST signed by curl itself, credentials in a 0600 config file.
    const body = door.requests.filter((r) => r.accessKeyId !== '').pop()!.body;
    fs.writeFileSync(path.join(dir, 'body.json'), body);
    fs.writeFileSync(path.join(dir, 'curl.conf'), `user = "${session.accessKeyId}:${session.secretAccessKey}"\n`
      + `header = "x-amz-security-token: ${session.sessionToken}"\n`, { mode: 0o600 });
    const curl: Cost[] = [];
    const curlVersion = execFileSync('curl', ['--version'], { encoding: 'utf8' }).split(' ')[1];
    for (let i = 0; i < RUNS; i++) {
      curl.push(await timed(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-K', path.join(dir, 'curl.conf'),
        '--aws-sigv4', `aws:amz:${REGION}:execute-api`, '-H', 'content-type: application/json', '--data-binary', `@${path.join(dir, 'body.json')}`, door.url], env));
    }
    const row = (name: string, costs: Cost[]) =>
      console.log(`${name.padEnd(56)} ${median(costs.map((c) => c.cpuMs)).toFixed(0).padStart(6)} ms CPU  ${median(costs.map((c) => c.peakKb)).toString().padStart(6)} KB peak RSS`);
    console.log(`median of ${RUNS} runs each (user+sys CPU of the whole run; peak RSS of its largest process)`);
    row('timer start, heartbeat not due (every minute)', notDue);
    row(`heartbeat run, curl ${curlVersion} signs (--aws-sigv4)`, heartbeat);
    row('heartbeat run, bash signs (curl older than 7.88)', bashSigned);
    row('heartbeat run without a role (signed identity document)', identitySent);
    row(`one bare curl --aws-sigv4 POST (reference; HTTP ${curl[0].out})`, curl);
    const cpu = (costs: Cost[]) => Math.max(1, median(costs.map((c) => c.cpuMs)));
    console.log(`bash-signed / curl-signed heartbeat run: ${(cpu(bashSigned) / cpu(heartbeat)).toFixed(1)}x CPU`);
    console.log(`identity-document / curl-signed heartbeat run: ${(cpu(identitySent) / cpu(heartbeat)).toFixed(1)}x CPU`);
  } finally {
    await Promise.all([imds.stop(), noRole.stop(), door.stop()]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
