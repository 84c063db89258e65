/*
 * RPM hosts: Debian's rpm 4.18 with its own database in the Debian root (see host.ts,
 * RPM_HOST_SETUP), under real systemd.
 */
import { declare } from './agent';
import { Host, outcome } from './host';
import { buildRpm } from './packages';

let host: Host | undefined;
afterEach(async () => { await host?.dispose(); host = undefined; });

describe('RPM host, real rpm and systemd', () => {
  test('5: a version with an epoch (1:7.0.0) installs once; the next Install and Verify match it without a download', async () => {
    host = await Host.boot({ format: 'RPM' });
    const agent = declare(host, buildRpm({ version: '1:7.0.0-1' }), 'RPM', '1:7.0.0');

    const first = await host.runScript([agent]);
    expect(outcome(first)).toMatchObject({ outcome: 'installed', version: '1:7.0.0-1' });
    const downloads = () => host!.requests().filter((r) => r.kind === 'https').length;
    expect(downloads()).toBe(1);

    const again = await host.runScript([agent]);
    expect(outcome(again)).toMatchObject({ outcome: 'already-installed', version: '1:7.0.0-1' });
    expect(downloads()).toBe(1);
    expect(outcome(await host.runScript([agent], { action: 'Verify' }))).toMatchObject({ outcome: 'compliant', version: '1:7.0.0-1' });
  });

  test('upgrade, then a crashing upgrade rolled back to the kept package; uninstall', async () => {
    host = await Host.boot({ format: 'RPM' });
    const v1 = declare(host, buildRpm({ version: '1.0.0-1' }), 'RPM', '1.0.0');
    const v2 = declare(host, buildRpm({ version: '2.0.0-1' }), 'RPM', '2.0.0-1');
    const v3 = declare(host, buildRpm({ version: '3.0.0-1', crashAfterSeconds: 1 }), 'RPM', '3.0.0');

    expect(outcome(await host.runScript([v1]))).toMatchObject({ outcome: 'installed', version: '1.0.0-1' });
    expect(outcome(await host.runScript([v2]))).toMatchObject({ outcome: 'upgraded', version: '2.0.0-1' });
    const failed = await host.runScript([v3]);
    expect(outcome(failed)).toMatchObject({ outcome: 'rolled-back', version: '2.0.0-1' });
    expect(failed.status).toBe(20);
    expect(host.unit('test-agent').ActiveState).toBe('active');
    expect(outcome(await host.runScript([v3], { action: 'Uninstall' }))).toMatchObject({ outcome: 'uninstalled', version: '' });
    expect(host.installedVersion('test-agent')).toBeUndefined();
  });
});
