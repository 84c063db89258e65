import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { fakePackage, interpolateParameters, RunResult, Sandbox, SandboxOptions, sha256 } from './sandbox';
import { AgentPackage, PackageFormat } from '../../lib';
import { renderLinuxScript } from '../../lib/install/install-scripts';

const RPM_URL = 'https://downloads.example.com/agent-1.2.3.x86_64.rpm';
const NEW = fakePackage('agent', '1.2.3-1');
const OLD = fakePackage('agent', '1.1.0-1');

function rpm(content = NEW, version = '1.2.3', url = RPM_URL): AgentPackage {
  return AgentPackage.fromUrl(url, {
    format: PackageFormat.RPM, architecture: ec2.InstanceArchitecture.X86_64,
    sha256: sha256(content), version, serviceName: 'agent',
  });
}

const sandboxes: Sandbox[] = [];
function sandbox(options: Partial<SandboxOptions> = {}): Sandbox {
  const box = new Sandbox({ format: 'RPM', ...options });
  sandboxes.push(box);
  return box;
}
afterAll(() => sandboxes.forEach((box) => box.dispose()));

function installed(box: Sandbox, packages: AgentPackage[], parameters: Record<string, string> = { action: 'Install' }): RunResult {
  return box.run(packages, parameters);
}

/** Puts the old version in place as a previous successful run of the script would have. */
function withKeptOldVersion(box: Sandbox): AgentPackage {
  const old = rpm(OLD, '1.1.0', 'https://downloads.example.com/agent-1.1.0.x86_64.rpm');
  box.serve('agent-1.1.0.x86_64.rpm', OLD);
  expect(box.run([old], { action: 'Install' }).result.outcome).toBe('installed');
  return old;
}

describe('the Linux install script, run in a sandbox', () => {
  test('fresh install: downloads over https only, verifies the hash, installs, starts the service and keeps the package', () => {
    // GIVEN
    const box = sandbox();
    box.serve('agent-1.2.3.x86_64.rpm', NEW);

    // WHEN
    const run = installed(box, [rpm()]);

    // THEN
    expect(run.status).toBe(0);
    expect(run.result).toEqual({ action: 'Install', outcome: 'installed', version: '1.2.3-1', imdsVersion: 'v2', tag: 'absent', activation: 'none', activationExitCode: '' });
    expect(box.installedVersion('agent')).toBe('1.2.3-1');
    expect(box.serviceActive('agent')).toBe(true);
    expect(run.calls).toContainEqual(expect.stringMatching(/^curl GET https:\/\/downloads\.example\.com\/agent-1\.2\.3\.x86_64\.rpm proto==https /));
    expect(tmpDirOf(run)).toMatch(new RegExp(`^${box.dir}/state/work/run\\.[0-9]+$`));
    expect(fs.readFileSync(box.stateFile('agent', 'last-good.pkg'), 'utf8')).toBe(NEW);
    expect(fs.readFileSync(box.stateFile('agent', 'last-good.sha256'), 'utf8')).toBe(sha256(NEW));
    expect(fs.statSync(path.dirname(box.stateFile('agent', 'x'))).mode & 0o777).toBe(0o700);
    // The private download dir is gone afterwards.
    expect(fs.readdirSync(path.join(box.dir, 'state', 'work'))).toEqual([]);
  });

  test('hash mismatch: nothing is installed and the run fails', () => {
    const box = sandbox({ installed: { agent: '1.1.0-1' } });
    box.serve('agent-1.2.3.x86_64.rpm', fakePackage('agent', '1.2.3-1-tampered'));

    const run = installed(box, [rpm()]);

    expect(run.status).toBe(13);
    expect(run.result.outcome).toBe('hash-mismatch');
    expect(run.stderr).toContain(`expected ${sha256(NEW)}`);
    expect(run.calls.filter((c) => c.startsWith('rpm -U') || c.startsWith('systemctl'))).toEqual([]);
    expect(box.installedVersion('agent')).toBe('1.1.0-1');
  });

  test('already installed with the service up: only the service is checked, nothing downloaded or restarted', () => {
    const box = sandbox({ installed: { agent: '1.2.3-1' } });

    const run = installed(box, [rpm()]);

    expect(run.status).toBe(0);
    expect(run.result.outcome).toBe('already-installed');
    expect(run.calls.filter((c) => /https:|^aws |^rpm -U|^systemctl (?!show)/.test(c))).toEqual([]);
    expect(run.calls).toContain('systemctl show -p ActiveState -p NRestarts -p ActiveEnterTimestampMonotonic agent');
  });

  test('a service that does not come up after a fresh install is rolled back: the package is removed', () => {
    const box = sandbox({ brokenVersions: ['1.2.3-1'] });
    box.serve('agent-1.2.3.x86_64.rpm', NEW);

    const run = installed(box, [rpm()]);

    expect(run.status).toBe(20);
    expect(run.result).toMatchObject({ outcome: 'rolled-back', version: '' });
    expect(run.stderr).toContain('service agent did not stay up for 0s; rolling back');
    expect(run.calls).toContain('rpm -e agent');
    expect(box.installedVersion('agent')).toBeUndefined();
    expect(fs.existsSync(box.stateFile('agent', 'last-good.pkg'))).toBe(false);
  });

  test('a service that does not come up after an upgrade is rolled back to the kept previous version', () => {
    // GIVEN 1.1.0 installed by an earlier run, and 1.2.3 whose service crashes
    const box = sandbox({ brokenVersions: ['1.2.3-1'] });
    withKeptOldVersion(box);
    box.serve('agent-1.2.3.x86_64.rpm', NEW);

    // WHEN
    const run = installed(box, [rpm()]);

    // THEN
    expect(run.status).toBe(20);
    expect(run.result).toMatchObject({ outcome: 'rolled-back', version: '1.1.0-1' });
    expect(box.installedVersion('agent')).toBe('1.1.0-1');
    expect(box.serviceActive('agent')).toBe(true);
    expect(run.calls).toContain(`rpm -U --oldpackage --replacepkgs ${box.stateFile('agent', 'last-good.pkg')}`);
  });

  test('a package the package manager rejects is rolled back too', () => {
    const broken = fakePackage('agent', '1.2.3-1', { failInstall: true });
    const box = sandbox();
    withKeptOldVersion(box);
    box.serve('agent-1.2.3.x86_64.rpm', broken);

    const run = installed(box, [rpm(broken)]);

    expect(run.result).toMatchObject({ outcome: 'rolled-back', version: '1.1.0-1' });
    expect(box.installedVersion('agent')).toBe('1.1.0-1');
  });

  test('an upgrade that fails where no previous package was kept says going back is impossible, and the next run tries again', () => {
    const box = sandbox({ installed: { agent: '1.0.0-1' }, brokenVersions: ['1.2.3-1'] });
    box.serve('agent-1.2.3.x86_64.rpm', NEW);

    const run = installed(box, [rpm()]);

    expect(run.status).toBe(22);
    expect(run.result).toMatchObject({ outcome: 'rollback-impossible', version: '1.2.3-1' });
    expect(run.stderr).toContain('no copy of the installed version (1.0.0-1) was kept or cached');
    const again = installed(box, [rpm()]);
    expect(again.result.outcome).toBe('rollback-impossible');
    expect(again.stderr).toContain('an earlier install of 1.2.3 did not finish; installing it again');
  });

  test('a kept package that was tampered with is not reinstalled', () => {
    const box = sandbox({ brokenVersions: ['1.2.3-1'] });
    withKeptOldVersion(box);
    fs.writeFileSync(box.stateFile('agent', 'last-good.pkg'), 'name=agent\nversion=6.6.6\n');
    box.serve('agent-1.2.3.x86_64.rpm', NEW);

    const run = installed(box, [rpm()]);

    expect(run.result.outcome).toBe('rollback-impossible');
    expect(run.stderr).toContain('the kept copy of 1.1.0 does not match its recorded SHA-256');
    expect(run.calls.filter((c) => c.includes('last-good.pkg'))).toEqual([]);
  });

  test('uninstall removes the package and its kept copy, even on an excluded instance', () => {
    const box = sandbox();
    withKeptOldVersion(box);
    fs.writeFileSync(path.join(box.dir, 'imds/tags/SecurityAgentManaged'), 'false');

    const run = installed(box, [rpm()], { action: 'Uninstall' });

    expect(run.status).toBe(0);
    expect(run.result).toEqual({ action: 'Uninstall', outcome: 'uninstalled', version: '', imdsVersion: 'v2', tag: 'false', activation: 'none', activationExitCode: '' });
    expect(run.calls).toEqual(expect.arrayContaining(['systemctl stop agent', 'rpm -e agent']));
    expect(box.installedVersion('agent')).toBeUndefined();
    expect(fs.existsSync(path.dirname(box.stateFile('agent', 'x')))).toBe(false);
  });

  test('uninstall where nothing is installed succeeds without touching anything', () => {
    const box = sandbox();
    const run = installed(box, [rpm()], { action: 'Uninstall' });
    expect(run.status).toBe(0);
    expect(run.result.outcome).toBe('not-installed');
    expect(run.calls.filter((c) => c.startsWith('rpm -e') || c.startsWith('systemctl'))).toEqual([]);
  });

  test.each([
    ['compliant', { installed: { agent: '1.2.3-1' } }, 0],
    ['wrong-version', { installed: { agent: '1.1.0-1' } }, 31],
    ['not-installed', {}, 32],
  ] as const)('verify reports %s', (outcome, options, status) => {
    const box = sandbox(options);
    const run = installed(box, [rpm()], { action: 'Verify' });
    expect(run.result.outcome).toBe(outcome);
    expect(run.status).toBe(status);
    expect(run.calls.filter((c) => /https:|^rpm -[Ue]|^systemctl (restart|stop)/.test(c))).toEqual([]);
  });

  test('verify reports a stopped service', () => {
    const box = sandbox({ installed: { agent: '1.2.3-1' } });
    fs.rmSync(path.join(box.dir, 'services', 'agent'));
    expect(installed(box, [rpm()], { action: 'Verify' }).result.outcome).toBe('service-down');
  });

  test('IMDSv2 is used whenever the token request works, without ever trying IMDSv1', () => {
    const box = sandbox({ imdsV1: true, installed: { agent: '1.2.3-1' } });
    const run = installed(box, [rpm()]);
    expect(run.result.imdsVersion).toBe('v2');
    expect(run.calls).not.toContainEqual(expect.stringContaining('/latest/meta-data/instance-id'));
  });

  test('falls back to IMDSv1 only when the token request fails, and says so', () => {
    const box = sandbox({ imdsV2: false, imdsV1: true, tags: { SecurityAgentManaged: 'false' } });
    const run = installed(box, [rpm()]);
    expect(run.status).toBe(0);
    expect(run.result).toMatchObject({ outcome: 'excluded', imdsVersion: 'v1', tag: 'false' });
    expect(run.stderr).toContain('used IMDSv1');
  });

  test('without any instance metadata the install fails rather than ignore a possible exclusion', () => {
    const box = sandbox({ imdsV2: false, imdsV1: false });
    const run = installed(box, [rpm()]);
    expect(run.status).toBe(10);
    expect(run.result).toMatchObject({ outcome: 'imds-unavailable', imdsVersion: 'none' });
  });

  test('a Debian arm64 host gets the DEB arm64 package from S3, with the bucket region and without the AWS CLI', () => {
    // GIVEN an RPM and a DEB for arm64 in a bucket
    const stack = new Stack(new App(), 'Stack', { env: { account: '111122223333', region: 'eu-west-1' } });
    const bucket = s3.Bucket.fromBucketName(stack, 'Packages', 'agent-packages');
    const debContent = fakePackage('security-agent', '1.2.3');
    const deb = AgentPackage.fromBucket(bucket, 'agent/1.2.3/agent_1.2.3_arm64.deb', {
      format: PackageFormat.DEB, architecture: ec2.InstanceArchitecture.ARM_64,
      sha256: sha256(debContent), version: '1.2.3', serviceName: 'security-agent',
    });
    const box = sandbox({ format: 'DEB', machine: 'aarch64', instanceProfile: 'agent-role' });
    box.putObject('agent-packages', 'agent/1.2.3/agent_1.2.3_arm64.deb', debContent);

    // WHEN (the bucket region is a literal here: no tokens to resolve)
    const run = installed(box, [rpm(), deb]);

    // THEN
    expect(run.result.outcome).toBe('installed');
    expect(box.installedVersion('security-agent')).toBe('1.2.3');
    // a signed GET from the regional endpoint with the instance profile's key: no AWS CLI on the PATH
    expect(run.calls).toContainEqual(expect.stringMatching(
      /^s3 GET https:\/\/agent-packages\.s3\.eu-west-1\.amazonaws\.com\/agent\/1\.2\.3\/agent_1\.2\.3_arm64\.deb signed-by=ASIASANDBOX\/\d{8}\/eu-west-1\/s3\/aws4_request, /));
    expect(run.stderr).toContain('signed with the instance profile role agent-role');
    expect(run.calls).toContainEqual(expect.stringMatching(/^dpkg -i /));
  });

  test.each([
    ['a tampered S3 object is refused by the hash check', 'agent-role', 'hash-mismatch', 13, 'SHA-256 mismatch'],
    ['an instance without credentials ends download-failed, saying why', undefined, 'download-failed', 12, 'no AWS credentials to read s3://agent-packages/agent.rpm'],
  ])('%s', (_name, instanceProfile, outcome, status, reason) => {
    const stack = new Stack(new App(), 'Stack', { env: { account: '111122223333', region: 'us-east-1' } });
    const pkg = AgentPackage.fromBucket(s3.Bucket.fromBucketName(stack, 'Packages', 'agent-packages'), 'agent.rpm', {
      format: PackageFormat.RPM, architecture: ec2.InstanceArchitecture.X86_64, sha256: sha256(NEW), version: '1.2.3', serviceName: 'agent',
    });
    const box = sandbox({ instanceProfile, installed: { agent: '1.1.0-1' } });
    box.putObject('agent-packages', 'agent.rpm', fakePackage('agent', '6.6.6'));

    const run = installed(box, [pkg]);

    expect(run.status).toBe(status);
    expect(run.result.outcome).toBe(outcome);
    expect(run.stderr).toContain(reason);
    expect(box.installedVersion('agent')).toBe('1.1.0-1');
    expect(run.calls.filter((c) => c.startsWith('rpm -U'))).toEqual([]);
  });

  test('a host without a package for its architecture is reported as unsupported', () => {
    const box = sandbox({ machine: 'aarch64' });
    const run = installed(box, [rpm()]);
    expect(run.status).toBe(11);
    expect(run.result.outcome).toBe('unsupported-platform');
  });

  test('the proxy is used for downloads, never for the instance metadata service', () => {
    const box = sandbox();
    box.serve('agent-1.2.3.x86_64.rpm', NEW);
    const run = installed(box, [rpm()], { action: 'Install', proxyUrl: 'http://proxy.internal:3128' });
    expect(run.result.outcome).toBe('installed');
    for (const call of run.calls.filter((c) => c.startsWith('curl'))) {
      expect(call).toContain('https_proxy=http://proxy.internal:3128 no_proxy=169.254.169.254');
    }
    expect(run.calls.filter((c) => c.includes('169.254.169.254/latest'))).not.toEqual([]);
  });
});

describe('tag semantics on the host (DESIGN.md truth table)', () => {
  // [instance tag, mode, outcome of an Install run]
  const table: Array<[string | undefined, string, string]> = [
    [undefined, 'ALL_INSTANCES', 'installed'],
    ['true', 'ALL_INSTANCES', 'installed'],
    ['false', 'ALL_INSTANCES', 'excluded'],
    ['yes', 'ALL_INSTANCES', 'installed'],
    [undefined, 'TAGGED_ONLY', 'not-targeted'],
    ['true', 'TAGGED_ONLY', 'installed'],
    ['false', 'TAGGED_ONLY', 'not-targeted'],
    ['yes', 'TAGGED_ONLY', 'not-targeted'],
  ];

  test.each(table)('tag %s in mode %s: %s', (tag, mode, outcome) => {
    const box = sandbox({ tags: tag === undefined ? {} : { Fleet: tag } });
    box.serve('agent-1.2.3.x86_64.rpm', NEW);

    const run = installed(box, [rpm()], { action: 'Install', mode, tagKey: 'Fleet' });

    expect(run.status).toBe(0);
    expect(run.result.outcome).toBe(outcome);
    expect(box.installedVersion('agent')).toBe(outcome === 'installed' ? '1.2.3-1' : undefined);
    if (outcome !== 'installed') {
      expect(run.calls.filter((c) => /https:|^rpm -U|^systemctl/.test(c))).toEqual([]);
    }
    if (tag === 'yes') {
      expect(run.result.tag).toBe('misconfigured');
      expect(run.stderr).toContain('tag Fleet has the value yes; only true and false mean something');
    }
  });
});

describe('parameters reach the script only after SSM validated them', () => {
  test.each([
    ['action', "Install'; rm -rf / #"],
    ['mode', 'EVERYTHING'],
    ['tagKey', "x'$(id)"],
    ['tagKey', '..'],
    ['proxyUrl', "http://proxy'; curl evil #"],
    ['proxyUrl', 'http://user:pass@proxy:3128'],
  ])('%s=%s is rejected', (name, value) => {
    expect(() => interpolateParameters(renderLinuxScript([rpm()]), { [name]: value })).toThrow(/SSM would reject/);
  });
});

const shellcheck = spawnSync('shellcheck', ['--version']).status === 0;
(shellcheck ? describe : describe.skip)('shellcheck', () => {
  test.each(['install-agent.sh', 'aws-request.sh', 's3-download.sh', 'package-signature.sh'])('the script file %s passes', (file) => {
    const run = spawnSync('shellcheck', [path.join(__dirname, '../../lib/install/scripts', file)], { encoding: 'utf8' });
    expect(run.stdout).toBe('');
    expect(run.status).toBe(0);
  });

  test('the rendered script, header included, passes', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rendered-'));
    const file = path.join(dir, 'script.sh');
    const s3Package = AgentPackage.fromBucket(s3.Bucket.fromBucketName(new Stack(new App(), 'S', { env: { region: 'us-east-1' } }), 'B', 'packages'), 'agent.deb', {
      format: PackageFormat.DEB, architecture: ec2.InstanceArchitecture.X86_64, sha256: 'a'.repeat(64), version: '1.2.3', serviceName: 'agent',
    });
    fs.writeFileSync(file, interpolateParameters(renderLinuxScript([rpm(), s3Package]), {}).join('\n') + '\n');
    const run = spawnSync('shellcheck', [file], { encoding: 'utf8' });
    fs.rmSync(dir, { recursive: true, force: true });
    expect(run.stdout).toBe('');
    expect(run.status).toBe(0);
  });
});

function tmpDirOf(run: RunResult): string {
  const call = run.calls.find((c) => c.startsWith('rpm -U'))!;
  return path.dirname(call.split(' ').pop()!);
}

test('a state dir that cannot be made: failed (1), with the result line', () => {
  const box = sandbox();
  fs.rmSync(path.join(box.dir, 'state'), { recursive: true });
  fs.writeFileSync(path.join(box.dir, 'state'), 'a file where the state dir belongs');

  const run = installed(box, [rpm()]);

  expect(run.status).toBe(1);
  expect(run.result).toMatchObject({ outcome: 'failed', version: '' });
  expect(run.stderr).toContain(`could not make the work dir ${box.dir}/state/work/run.`);
});

describe('TERM at any moment of a run', () => {
  // bash 5.2 runs a pending trap from inside its parser, then cannot parse the trap ("trap:
  // line 2: unexpected EOF while looking for matching `)'") and the run dies halfway.
  test('every run ends with its line, or is ended by the signal before it has begun; bash never fails to run the trap', async () => {
    const box = sandbox();
    box.serve('agent-1.2.3.x86_64.rpm', NEW);
    const seen = new Set<string>();
    for (let ms = 0; ms < 60; ms++) {
      const run = await box.runSignalled([rpm()], { action: 'Install' }, 'SIGTERM', ms);
      expect(run.stderr).not.toMatch(/unexpected EOF|syntax error/);
      if ('result' in run) {
        expect(['interrupted', 'installed', 'already-installed']).toContain(run.result.outcome);
        seen.add(run.result.outcome);
      } else {
        expect(run).toMatchObject({ status: null, signal: 'SIGTERM', stdout: '' });
        seen.add('ended by the signal');
      }
    }
    expect(seen).toContain('interrupted');
  }, 120_000);

  // The old supervisor trapped every TERM: under a flood bash ran traps inside traps until it
  // crashed (139), a signal taken just before a trap ended its wait early (143), or a wait it
  // ended just as the run exited lost the run's status (255).
  test('a flood of TERM: each run rolls back and ends interrupted (40) with its line', async () => {
    const box = sandbox();
    box.serve('agent-1.2.3.x86_64.rpm', NEW);
    for (let round = 0; round < 8; round++) {
      const run = await box.runStormed([rpm()], { action: 'Install' });
      expect(run.stderr).not.toMatch(/unexpected EOF|syntax error|Segmentation/);
      expect(run).toMatchObject({ status: 40, result: { outcome: 'interrupted' } });
    }
    expect(fs.readdirSync(path.join(box.dir, 'state', 'work'))).toEqual([]);
  }, 120_000);
});
