/*
 * The install document with the host companion: what it carries, that the rendered script
 * (companion settings and install fragment included) passes shellcheck, the 64 KB limit, and
 * the switches on the document and on the fleet.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { App, Duration, Size, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { interpolateParameters } from './sandbox';
import { AgentFleet, AgentInstallDocument, AgentPackage, PackageFormat } from '../../lib';
import { companionBody, companionBodyBase64 } from '../../lib/install/companion-script';
import { renderLinuxScript } from '../../lib/install/install-scripts';

const ENV = { account: '111122223333', region: 'eu-west-1' };
const URL = 'https://abcdefghij.execute-api.eu-west-1.amazonaws.com/live/v1/heartbeat';
const pkg = (format: PackageFormat, architecture = ec2.InstanceArchitecture.X86_64) => AgentPackage.fromUrl(`https://example.com/agent.${format.toLowerCase()}`, {
  format, architecture, sha256: 'a'.repeat(64), version: '1.2.3', packageName: 'agent', serviceName: 'agentd',
});
const LINUX = [pkg(PackageFormat.RPM), pkg(PackageFormat.DEB, ec2.InstanceArchitecture.ARM_64)];

function documentContent(stack: Stack): any {
  return Object.values(Template.fromStack(stack).findResources('AWS::SSM::Document'))[0].Properties.Content;
}

describe('the companion in the install document', () => {
  test('the program is the companion\'s body, gzip + base64, the same on every platform', () => {
    const b64 = companionBodyBase64();
    expect(gunzipSync(Buffer.from(b64, 'base64')).toString('utf8')).toBe(companionBody().join('\n') + '\n');
    expect(Buffer.from(b64, 'base64')[9]).toBe(0xff);
  });

  test('a Linux-only document carries the settings and stays below SSM\'s 64 KB', () => {
    const stack = new Stack(new App(), 'S', { env: ENV });
    new AgentInstallDocument(stack, 'D', { packages: LINUX, companion: { heartbeatUrl: URL, heartbeatInterval: Duration.minutes(5), spoolLimit: Size.mebibytes(16) } });
    const content = documentContent(stack);
    const lines: string[] = content.mainSteps[0].inputs.runCommand;
    expect(lines).toEqual(expect.arrayContaining([`COMPANION_URL='${URL}'`, "COMPANION_IDENTITY_URL=''", "COMPANION_REGION='eu-west-1'", "COMPANION_INTERVAL='300'", "COMPANION_SPOOL_MAX_KB='16384'"]));
    expect(lines.some((l) => l.startsWith('companion_install() {'))).toBe(true);
    expect(JSON.stringify(content).length).toBeLessThan(60 * 1024);
  });

  test('without it, the document has none of it', () => {
    const stack = new Stack(new App(), 'S', { env: ENV });
    new AgentInstallDocument(stack, 'D', { packages: LINUX });
    expect(JSON.stringify(documentContent(stack))).not.toContain('COMPANION_');
  });

  test('beside a Windows step that downloads from S3 it does not fit: a synth error says so', () => {
    const stack = new Stack(new App(), 'S', { env: ENV });
    const msi = AgentPackage.fromBucket(s3.Bucket.fromBucketName(stack, 'B', 'agent-packages'), 'agent.msi', {
      format: PackageFormat.MSI, architecture: ec2.InstanceArchitecture.X86_64, sha256: 'a'.repeat(64), version: '1.2.3', packageName: 'agent', serviceName: 'agentd',
    });
    expect(() => new AgentInstallDocument(stack, 'D', { packages: [...LINUX, msi], companion: { heartbeatUrl: URL } }))
      .toThrow(/companion.*a document of at most 65536 bytes/s);
  });

  test('beside a Windows step that downloads over https it fits: the S3 signer is left out of that step', () => {
    const stack = new Stack(new App(), 'S', { env: ENV });
    new AgentInstallDocument(stack, 'D', { packages: [...LINUX, pkg(PackageFormat.MSI)], companion: { heartbeatUrl: URL } });
    const content = documentContent(stack);
    expect(JSON.stringify(content).length).toBeLessThan(64 * 1024);
    expect(content.mainSteps[1].inputs.runCommand.join('\n')).not.toContain('function Get-S3Object');
  });

  test.each([
    [{ heartbeatUrl: 'http://abc.execute-api.eu-west-1.amazonaws.com/live/v1/heartbeat' }, /companion.heartbeatUrl/],
    [{ heartbeatUrl: URL, heartbeatInterval: Duration.seconds(30) }, /companion.heartbeatInterval.*1 minute to 1 day/],
    [{ heartbeatUrl: URL, identityHeartbeatUrl: 'abc.execute-api.eu-west-1.amazonaws.com/live/v1/identity-heartbeat' }, /companion.identityHeartbeatUrl.*identity-document heartbeat method/],
    [{ heartbeatUrl: URL, spoolLimit: Size.kibibytes(10) }, /companion.spoolLimit.*1 MiB to 4 GiB/],
  ])('bad settings are refused at synth (%#)', (companion, message) => {
    const stack = new Stack(new App(), 'S', { env: ENV });
    expect(() => new AgentInstallDocument(stack, 'D', { packages: LINUX, companion })).toThrow(message);
  });

  const shellcheck = spawnSync('shellcheck', ['--version']).status === 0;
  (shellcheck ? test : test.skip)('the rendered script with the companion passes shellcheck, and so do its fragments', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rendered-companion-'));
    const file = path.join(dir, 'script.sh');
    const companion = { heartbeatUrl: URL, region: 'eu-west-1', intervalSeconds: 600, spoolMaxKb: 65536 };
    fs.writeFileSync(file, interpolateParameters(renderLinuxScript(LINUX, undefined, companion), {}).join('\n') + '\n');
    const scripts = path.join(__dirname, '../../lib/install/scripts');
    const run = spawnSync('shellcheck', [file, ...['companion.sh', 'companion-spool.sh', 'companion-install.sh'].map((f) => path.join(scripts, f))], { encoding: 'utf8' });
    fs.rmSync(dir, { recursive: true, force: true });
    expect(run.stdout).toBe('');
    expect(run.status).toBe(0);
  });
});

describe('AgentFleet.enableCompanion', () => {
  const fleet = (props: Record<string, unknown>) => {
    const stack = new Stack(new App(), 'S', { env: ENV });
    new AgentFleet(stack, 'Fleet', { agentName: 'agent', packages: LINUX, enableImdsEnforcement: false, ...props });
    return stack;
  };

  test('on by default with a backend: the backend\'s URL and interval, the telemetry key', () => {
    const text = JSON.stringify(documentContent(fleet({ backend: { heartbeatInterval: Duration.minutes(15) } })));
    expect(text).toContain("COMPANION_INTERVAL='900'");
    expect(text).toMatch(/COMPANION_URL='https:\/\/",\{"Ref":"FleetBackend[0-9A-F]+"\},".execute-api.eu-west-1./);
    expect(text).toMatch(/COMPANION_KMS_KEY='",\{"Fn::GetAtt":\["FleetTelemetryKey[0-9A-F]+","Arn"\]\}/);
    // A regional backend has no identity-document path.
    expect(text).toContain("COMPANION_IDENTITY_URL=''");
  });

  test('off without a backend, and off when switched off', () => {
    expect(JSON.stringify(documentContent(fleet({ enableBackend: false })))).not.toContain('COMPANION_URL');
    expect(JSON.stringify(documentContent(fleet({ enableCompanion: false })))).not.toContain('COMPANION_URL');
  });

  test('switched on without a backend: a synth error', () => {
    expect(() => fleet({ enableBackend: false, enableCompanion: true })).toThrow(/enableCompanion.*false while enableBackend is false/s);
  });
});
