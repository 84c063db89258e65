/*
 * The host companion on a real Debian host with systemd: installed by the install script with
 * the agent, started by systemd (its timer's service), signing its heartbeat with the instance
 * profile's credentials from the metadata service; the stand-in of the heartbeat method
 * (routes/execute-api.js) verifies each signature with @smithy/signature-v4. Uninstall
 * removes it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { declare } from './agent';
import { Host, TEST_SETTINGS } from './host';
import { buildDeb } from './packages';
import { PACKAGE_HOST } from './roots';
import { renderLinuxScript } from '../../lib/install/install-scripts';

const INSTANCE = 'i-0123456789abcdef0';
const UNIT = 'cdk-agent-fleet-companion';
const identity = {
  accountId: '111122223333', architecture: process.arch === 'arm64' ? 'arm64' : 'x86_64', availabilityZone: 'eu-west-1a',
  imageId: 'ami-0123456789abcdef0', instanceId: INSTANCE, instanceType: 'm7i.large', privateIp: '10.0.0.12', region: 'eu-west-1', version: '2017-09-30',
};
const credentials = {
  Code: 'Success', Type: 'AWS-HMAC', AccessKeyId: 'ASIAHOSTTESTSESSION01', SecretAccessKey: 'c2VjcmV0LW9mLXRoZS1ob3N0LXRlc3Qtc2Vzc2lvbg',
  Token: 'VG9rZW4tb2YtdGhlLWhvc3QtdGVzdC1zZXNzaW9uLXdpdGgtc29tZS1sZW5ndGg=', Expiration: '2099-01-01T00:00:00Z',
};
const answer = {
  instanceId: INSTANCE, nextHeartbeatSeconds: 600, telemetryBucket: 'telemetry-bucket', telemetryPrefix: `agents/AROAFLEET:${INSTANCE}/`,
  sensors: { PACKAGE_INVENTORY: 'ENABLED', SOFTWARE_CONFIGURATION: 'DISABLED', PROCESS_EVENTS: 'DISABLED', NETWORK_EVENTS: 'DISABLED', FILE_INTEGRITY: 'DISABLED' },
  instructions: [],
};

let host: Host | undefined;
afterEach(async () => { await host?.dispose(); host = undefined; });

const heartbeats = (h: Host): Array<{ verdict: string; signedHeaders: string; body: any }> => {
  const file = path.join(h.share, 'heartbeats.log');
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').trim().split('\n').map((line) => JSON.parse(line)).map((r) => ({ ...r, body: JSON.parse(r.body) }));
};

/** Whether any of the companion's program, units or state is on the host. */
const companionFiles = (h: Host): boolean => h.exec(
  `ls -d /usr/local/libexec/cdk-agent-fleet /var/lib/cdk-agent-fleet-companion /etc/systemd/system/${UNIT}.timer /etc/systemd/system/${UNIT}.service`,
  { allowFailure: true }).stdout.trim() !== '';

describe('the host companion on a DEB host with systemd', () => {
  test('installed with the agent, run by systemd, its signature verifies; the agent stopped shows; tagged out or uninstalled, it goes', async () => {
    host = await Host.boot();
    fs.writeFileSync(path.join(host.share, 'role'), 'FleetInstanceRole');
    fs.writeFileSync(path.join(host.share, 'credentials.json'), JSON.stringify(credentials, null, 2));
    fs.writeFileSync(path.join(host.share, 'identity.json'), JSON.stringify(identity, null, 2));
    fs.writeFileSync(path.join(host.share, 'heartbeat-answer.json'), JSON.stringify(answer));
    const agent = declare(host, buildDeb({ version: '1.0.0-1' }), 'DEB', '1.0.0');
    const script = renderLinuxScript([agent], TEST_SETTINGS, {
      heartbeatUrl: `https://${PACKAGE_HOST}/prod/v1/heartbeat`, region: 'eu-west-1', intervalSeconds: 600, spoolMaxKb: 1024,
    });

    // WHEN the document installs the agent
    const install = await host.runScript([agent], { action: 'Install' }, {}, script);

    // THEN the agent and the companion's timer are there
    expect(install.result).toMatchObject({ outcome: 'installed' });
    expect(install.stderr).toContain('companion installed');
    expect(host.unit(`${UNIT}.timer`).ActiveState).toBe('active');
    expect(host.exec(`stat -c '%a %U' /usr/local/libexec/cdk-agent-fleet/companion /var/spool/cdk-agent-fleet`).stdout.trim().split('\n'))
      .toEqual(['700 root', '700 root']);

    // WHEN systemd starts the companion's service (as its timer does)
    host.exec(`systemctl start ${UNIT}.service`);

    // THEN one heartbeat, whose signature verified, describing the running agent
    const [first] = heartbeats(host);
    expect(first.verdict).toBe('ok');
    // From curl 7.88 (Debian 12's) curl signs the heartbeat itself (--aws-sigv4); older curls get the bash signer's headers.
    const [, major, minor] = /^curl (\d+)\.(\d+)/.exec(host.exec('curl --version').stdout) ?? ['', '0', '0'];
    const curlSigns = Number(major) > 7 || (Number(major) === 7 && Number(minor) >= 88);
    expect(first.signedHeaders).toBe(curlSigns ? 'content-type;host;x-amz-date;x-amz-security-token' : 'host;x-amz-content-sha256;x-amz-date;x-amz-security-token');
    expect(first.body).toMatchObject({
      agentVersion: '1.0.0-1', imdsVersion: 'v2', identityDocument: { instanceId: INSTANCE, region: 'eu-west-1', accountId: '111122223333' },
      agentService: { state: 'RUNNING' },
    });
    expect(host.exec('stat -c %a /var/lib/cdk-agent-fleet-companion/answer.json && cat /var/lib/cdk-agent-fleet-companion/answer.json').stdout)
      .toBe(`644\n${JSON.stringify(answer)}`);
    expect(host.exec(`journalctl -u ${UNIT}.service -o cat`).stdout).toContain('"outcome":"sent"');

    // WHEN the agent's service stops and the companion runs again (made due at once)
    host.exec('systemctl stop test-agent && rm /var/lib/cdk-agent-fleet-companion/state/next-due');
    host.exec(`systemctl start ${UNIT}.service`);

    // THEN the heartbeat says so, and the sensor the backend switched on is FAILED
    const second = heartbeats(host)[1];
    expect(second.verdict).toBe('ok');
    expect(second.body.agentService).toEqual({ state: 'STOPPED', message: 'systemd: LoadState=loaded ActiveState=inactive SubState=dead' });
    expect(second.body.sensors.PACKAGE_INVENTORY).toEqual({ state: 'FAILED', message: 'the agent\'s service is STOPPED' });

    // WHEN the instance is tagged out of the fleet and the association runs
    host.setTag('SecurityAgentManaged', 'false');
    const excluded = await host.runScript([agent], { action: 'Install' }, {}, script);

    // THEN the companion goes (the agent stays: exclusion only stops managing it)
    expect(excluded.result).toMatchObject({ outcome: 'excluded' });
    expect(companionFiles(host)).toBe(false);
    expect(host.unit(`${UNIT}.timer`).ActiveState).toBe('inactive');

    // WHEN it is back in the fleet
    host.setTag('SecurityAgentManaged', undefined);
    host.exec('systemctl start test-agent');
    const back = await host.runScript([agent], { action: 'Install' }, {}, script);
    expect(back.result).toMatchObject({ outcome: 'already-installed' });
    expect(host.unit(`${UNIT}.timer`).ActiveState).toBe('active');

    // WHEN the document uninstalls the agent
    const uninstall = await host.runScript([agent], { action: 'Uninstall' }, {}, script);

    // THEN the companion is gone too
    expect(uninstall.result).toMatchObject({ outcome: 'uninstalled' });
    expect(host.unit(`${UNIT}.timer`).ActiveState).toBe('inactive');
    expect(companionFiles(host)).toBe(false);
  });
});
