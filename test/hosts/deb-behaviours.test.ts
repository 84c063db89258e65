/*
 * Issue 9's numbered behaviours of the Linux install step, each on real dpkg and systemd.
 * Each of these tests fails on the script before the fix (see the README, "Real-host tests").
 */
import { declare } from './agent';
import { Host, outcome } from './host';
import { buildDeb } from './packages';
import { DEFAULT_HEALTH_WINDOW_SECONDS } from '../../lib/install/install-scripts';

let host: Host | undefined;
afterEach(async () => { await host?.dispose(); host = undefined; });

const STATE = '/var/lib/cdk-agent-fleet';

describe('the run lock and what reaches the agent (1, 2)', () => {
  test('1: the run lock outlives Uninstall: a run started after it waits for the run that was queued behind it', async () => {
    host = await Host.boot();
    const v1 = declare(host, buildDeb({ version: '1.0.0-1', prermSeconds: 4 }), 'DEB', '1.0.0');
    const v2 = declare(host, buildDeb({ version: '2.0.0-1', postinstSeconds: 8 }), 'DEB', '2.0.0');
    expect(outcome(await host.runScript([v1]))).toMatchObject({ outcome: 'installed' });

    // GIVEN an Uninstall that holds the lock (slow prerm), and an Install queued behind it
    const uninstall = host.startScript([v1], { action: 'Uninstall' });
    await host.waitForFile('/run/test-agent-prerm-started');
    const queued = host.startScript([v2], { action: 'Install' });
    expect(outcome(await uninstall.done)).toMatchObject({ outcome: 'uninstalled', version: '' });
    // WHEN a new run starts while the queued one installs (its postinst takes 8 s)
    await host.waitForFile('/run/test-agent-postinst-started');
    const late = host.startScript([v2], { action: 'Install' });
    const [first, second] = await Promise.all([queued.done, late.done]);

    // THEN the late run waited for the queued one instead of running beside it
    expect(outcome(first)).toMatchObject({ outcome: 'installed', version: '2.0.0-1' });
    expect(outcome(second)).toMatchObject({ outcome: 'already-installed', version: '2.0.0-1' });
    expect(second.stderr).not.toContain('package manager is busy');
    expect(host.exec(`test -f ${STATE}/.run.lock`, { allowFailure: true }).status).toBe(0);
  });

  test('2: nothing of the run reaches a process a maintainer script starts: no lock descriptor, environment, umask or working directory', async () => {
    host = await Host.boot();
    const agent = declare(host, buildDeb({ version: '1.0.0-1', postinstStartsHelper: true }), 'DEB', '1.0.0');

    const run = await host.runScript([agent], { action: 'Install' });
    expect(outcome(run)).toMatchObject({ outcome: 'installed' });

    const helper = host.exec('cat /run/test-agent-helper.pid').stdout.trim();
    const fds = host.exec(`ls -l /proc/${helper}/fd/ | sed -n 's/.*-> //p'`).stdout;
    expect(fds).not.toContain(STATE);
    const environment = host.exec(`tr '\\0' '\\n' < /proc/${helper}/environ`).stdout;
    // The run exports no_proxy for its own curl; SSM gives it AWS_SSM_*.
    expect(environment).not.toMatch(/^(no_proxy|NO_PROXY|AWS_SSM_[A-Z_]+)=/m);
    expect(host.exec(`sed -n 's/^Umask:\\t//p' /proc/${helper}/status`).stdout.trim()).toBe('0022');
    expect(host.exec(`readlink /proc/${helper}/cwd`).stdout.trim()).toBe('/');

    // The next run is not held up by the helper.
    const again = await host.runScript([agent], { action: 'Install' }, { lockWaitSeconds: 5 });
    expect(outcome(again)).toMatchObject({ outcome: 'already-installed' });
  });
});

describe('a busy package manager (3)', () => {
  test('3: waits for dpkg held by another install, logs the wait, then installs', async () => {
    host = await Host.boot();
    const other = buildDeb({ name: 'other-package', version: '1.0-1', postinstSeconds: 8 });
    host.put(other.file, '/root/other.deb');
    const agent = declare(host, buildDeb({ version: '1.0.0-1' }), 'DEB', '1.0.0');

    const holder = host.execAsync('dpkg -i /root/other.deb');
    await host.waitForFile('/run/other-package-postinst-started');
    const run = await host.runScript([agent], { action: 'Install' }, { packageManagerWaitSeconds: 60 });
    await holder;

    expect(outcome(run)).toMatchObject({ outcome: 'installed', version: '1.0.0-1' });
    expect(run.stderr).toMatch(/the package manager is busy \(lock held by \d+ \(dpkg\)\); waiting up to 60s/);
    expect(run.stderr).toMatch(/the package manager is free after \d+s/);
  });

  test('3: a package manager that stays busy ends package-manager-busy (15), with nothing rolled back', async () => {
    host = await Host.boot();
    const other = buildDeb({ name: 'other-package', version: '1.0-1', postinstSeconds: 30 });
    host.put(other.file, '/root/other.deb');
    const agent = declare(host, buildDeb({ version: '1.0.0-1' }), 'DEB', '1.0.0');

    const holder = host.execAsync('dpkg -i /root/other.deb');
    await host.waitForFile('/run/other-package-postinst-started');
    const run = await host.runScript([agent], { action: 'Install' }, { packageManagerWaitSeconds: 4 });

    expect(outcome(run)).toMatchObject({ outcome: 'package-manager-busy', version: '' });
    expect(run.status).toBe(15);
    expect(run.stderr).not.toContain('rolling back');
    expect(host.installedVersion('test-agent')).toBeUndefined();
    // The other dpkg is still configuring; disposing of the host ends it.
    void holder;
  });
});

describe('health on every Install (4)', () => {
  test('4: the default health window catches a service that crashes after 7 s', async () => {
    host = await Host.boot();
    const agent = declare(host, buildDeb({ version: '1.0.0-1', crashAfterSeconds: 7 }), 'DEB', '1.0.0');

    const run = await host.runScript([agent], { action: 'Install' }, { healthWindowSeconds: DEFAULT_HEALTH_WINDOW_SECONDS });

    expect(outcome(run)).toMatchObject({ outcome: 'rolled-back', version: '' });
    expect(run.status).toBe(20);
    expect(run.stderr).toMatch(/service test-agent (restarted within the health window|went \w+)/);
    expect(host.installedVersion('test-agent')).toBeUndefined();
  });

  test('4: with the pinned version installed, a broken service is repaired (restart, then reinstall)', async () => {
    host = await Host.boot();
    const agent = declare(host, buildDeb({ version: '1.0.0-1' }), 'DEB', '1.0.0');
    expect(outcome(await host.runScript([agent]))).toMatchObject({ outcome: 'installed' });

    // Stopped: a restart repairs it.
    host.exec('systemctl stop test-agent');
    const restarted = await host.runScript([agent]);
    expect(outcome(restarted)).toMatchObject({ outcome: 'repaired', version: '1.0.0-1' });
    expect(host.unit('test-agent').ActiveState).toBe('active');

    // Its program deleted: a restart cannot help, reinstalling the pinned version does.
    host.exec('systemctl stop test-agent && rm /usr/sbin/test-agentd');
    const reinstalled = await host.runScript([agent]);
    expect(outcome(reinstalled)).toMatchObject({ outcome: 'repaired', version: '1.0.0-1' });
    expect(reinstalled.stderr).toContain('reinstalling 1.0.0');
    expect(host.unit('test-agent').ActiveState).toBe('active');
  });
});

describe('going back (6) and signals (7)', () => {
  test('6: a failed upgrade with no kept copy says so (22) and the next Install tries again', async () => {
    host = await Host.boot();
    // 1.0.0 installed by other means: the script kept nothing, apt cached nothing.
    host.put(buildDeb({ version: '1.0.0-1' }).file, '/root/v1.deb');
    host.exec('dpkg -i /root/v1.deb && systemctl start test-agent');
    const v2 = declare(host, buildDeb({ version: '2.0.0-1', crashAfterSeconds: 1 }), 'DEB', '2.0.0');

    const run = await host.runScript([v2]);
    expect(outcome(run)).toMatchObject({ outcome: 'rollback-impossible', version: '2.0.0-1' });
    expect(run.status).toBe(22);

    const again = await host.runScript([v2]);
    expect(outcome(again)).toMatchObject({ outcome: 'rollback-impossible', version: '2.0.0-1' });
    expect(again.stderr).toContain('an earlier install of 2.0.0 did not finish');
  });

  test('6: the package manager\'s cached copy of the installed version is the way back', async () => {
    host = await Host.boot();
    const v1 = buildDeb({ version: '1.0.0-1' });
    host.put(v1.file, '/var/cache/apt/archives/test-agent_1.0.0-1_amd64.deb');
    host.exec('dpkg -i /var/cache/apt/archives/test-agent_1.0.0-1_amd64.deb && systemctl start test-agent');
    const v2 = declare(host, buildDeb({ version: '2.0.0-1', crashAfterSeconds: 1 }), 'DEB', '2.0.0');

    const run = await host.runScript([v2]);

    expect(outcome(run)).toMatchObject({ outcome: 'rolled-back', version: '1.0.0-1' });
    expect(host.unit('test-agent').ActiveState).toBe('active');
  });

  test.each([
    ['the script', (pid: number) => `${pid}`],
    ['its whole process group (a shutdown)', (pid: number) => `-- -${pid}`],
  ])('7: SIGTERM to %s while dpkg configures an upgrade: dpkg finishes, the upgrade is rolled back, the JSON line printed, temp files gone', async (_to, target) => {
    host = await Host.boot();
    const v1 = declare(host, buildDeb({ version: '1.0.0-1' }), 'DEB', '1.0.0');
    const v2 = declare(host, buildDeb({ version: '2.0.0-1', postinstSeconds: 5 }), 'DEB', '2.0.0');
    expect(outcome(await host.runScript([v1]))).toMatchObject({ outcome: 'installed' });
    // The marker v1's install left would send the signal before the upgrade starts.
    host.exec('rm /run/test-agent-postinst-started');

    const upgrade = host.startScript([v2], { action: 'Install' });
    await host.waitForFile('/run/test-agent-postinst-started');
    host.exec(`kill -TERM ${target(await upgrade.pid())}`);
    const run = await upgrade.done;

    expect(outcome(run)).toMatchObject({ outcome: 'interrupted', version: '1.0.0-1' });
    expect(run.status).toBe(40);
    expect(run.stderr).toContain('interrupted by SIGTERM; rolling back');
    expect(host.unit('test-agent').ActiveState).toBe('active');
    expect(host.exec('find / -xdev -name agent.pkg').stdout).toBe('');
  });

  test('7: TERM after TERM all through an upgrade: each run stops, rolls back what it changed and ends with its line', async () => {
    host = await Host.boot();
    const v1 = declare(host, buildDeb({ version: '1.0.0-1' }), 'DEB', '1.0.0');
    const v2 = declare(host, buildDeb({ version: '2.0.0-1', postinstSeconds: 2 }), 'DEB', '2.0.0');
    expect(outcome(await host.runScript([v1]))).toMatchObject({ outcome: 'installed' });

    for (let round = 0; round < 3; round++) {
      const upgrade = host.startScript([v2], { action: 'Install' });
      const pid = await upgrade.pid();
      // From the moment the run takes signals (before that, TERM ends any program): its work
      // dir appears after that.
      await host.waitForFile(`${STATE}/work/run.*`);
      const storm = host.execAsync(`while kill -TERM ${pid} 2>/dev/null; do sleep 0.00${round + 1}; done`);
      const run = await upgrade.done;
      await storm;

      expect(run.stderr).not.toContain('unexpected EOF');
      expect(outcome(run)).toMatchObject({ outcome: 'interrupted', version: '1.0.0-1' });
      expect(run.status).toBe(40);
    }
    expect(host.unit('test-agent').ActiveState).toBe('active');
    expect(host.exec(`find ${STATE}/work -mindepth 1`).stdout).toBe('');
  });

  test('7: after SIGKILL to the process group (SSM Agent cancelling or timing out), the next run removes what the killed run left', async () => {
    host = await Host.boot();
    const agent = declare(host, buildDeb({ version: '1.0.0-1', postinstSeconds: 5 }), 'DEB', '1.0.0');

    const killed = host.startScript([agent], { action: 'Install' });
    await host.waitForFile('/run/test-agent-postinst-started');
    host.exec(`kill -KILL -- -${await killed.pid()}`);
    await killed.done;
    host.exec('while pgrep -x dpkg >/dev/null; do sleep 0.2; done');

    expect(host.exec(`find ${STATE}/work -mindepth 1 -maxdepth 1`).stdout).not.toBe('');
    const next = await host.runScript([agent]);
    expect(outcome(next)).toMatchObject({ version: '1.0.0-1' });
    expect(host.exec('find / -xdev -name agent.pkg').stdout).toBe('');
    expect(host.exec(`find ${STATE}/work -mindepth 1`).stdout).toBe('');
  });
});

describe('the IMDS token (8)', () => {
  test('8: the token is never in the arguments or environment of any process', async () => {
    host = await Host.boot({ tags: { SecurityAgentManaged: 'true' } });
    host.setImdsDelay(1000);
    const agent = declare(host, buildDeb({ version: '1.0.0-1' }), 'DEB', '1.0.0');
    const token = host.token;

    // Every process's arguments and environment, over and over until the run ends.
    const watcher = host.execAsync('until [ -e /mnt/test/stop-watching ]; do cat /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null | tr "\\0" "\\n"; done'
      + ' | grep -a -e 169.254.169.254 -e token | sort -u');
    const run = await host.runScript([agent], { action: 'Install' }, { healthWindowSeconds: 0 });
    host.exec('touch /mnt/test/stop-watching');
    const seen = (await watcher).stdout;

    expect(outcome(run)).toMatchObject({ outcome: 'installed', imdsVersion: 'v2', tag: 'true' });
    expect(seen).toContain('http://169.254.169.254/latest/meta-data/tags/instance'); // the watcher saw curl ask
    expect(seen).not.toContain(token);
    expect(host.requests().filter((r) => r.url.includes('/meta-data/')).every((r) => r.token === token)).toBe(true);
  });
});
