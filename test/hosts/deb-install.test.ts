import { declare } from './agent';
import { Host } from './host';
import { buildDeb } from './packages';

let host: Host | undefined;
afterEach(async () => { await host?.dispose(); host = undefined; });

describe('DEB host, real dpkg and systemd', () => {
  test('fresh install over HTTPS: installed, service running, JSON line with the installed version', async () => {
    host = await Host.boot();
    const agent = declare(host, buildDeb({ version: '1.0.0-1' }), 'DEB', '1.0.0');

    const run = await host.runScript([agent]);

    expect(run.result).toEqual({ action: 'Install', outcome: 'installed', version: '1.0.0-1', imdsVersion: 'v2', tag: 'absent', activation: 'none', activationExitCode: '' });
    expect(run.status).toBe(0);
    expect(host.installedVersion('test-agent')).toBe('1.0.0-1');
    expect(host.unit('test-agent').ActiveState).toBe('active');
  });
});
