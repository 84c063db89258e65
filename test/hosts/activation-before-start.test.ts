/*
 * An agent whose service does not stay up until it is activated (CrowdStrike's sensor without
 * its CID), on real hosts: with `beforeServiceStart` the activation runs between the package
 * install and the health-checked start; without it the health check fails and the install
 * rolls back before the activation could run.
 */
import { App, Stack } from 'aws-cdk-lib';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { declare } from './agent';
import { activationScript, bootWithActivation, ENV } from './activation-host';
import { Host, outcome } from './host';
import { buildDeb } from './packages';
import { ActivationArgument, ActivationSecret, AgentActivation } from '../../lib';

const SECRET_ARN = 'arn:aws:secretsmanager:us-east-1:111122223333:secret:falcon/cid-AbCdEf';
const CID = '1234567890abcdef1234567890abcdef-12';
const TOOL = '/opt/CrowdStrike/falconctl';
/** What the fake falconctl writes and the fake sensor needs to stay up. */
const CID_FILE = '/etc/test-agent/cid';

/** A fake falconctl: `-s -f --cid=<cid>` stores the CID (what the sensor reads at start) and counts its runs. */
const FAKE_FALCONCTL = [
  '#!/bin/sh',
  'echo run >> /root/tool.runs',
  'for a in "$@"; do case "$a" in --cid=*) printf "%s" "${a#--cid=}" > ' + CID_FILE + ' ;; esac; done',
  'exit "$(cat /etc/fake-activation-exit 2>/dev/null || echo 0)"',
].join('\n') + '\n';

let host: Host | undefined;
afterEach(async () => { await host?.dispose(); host = undefined; });

function falconActivation(beforeServiceStart: boolean): { stack: Stack; activation: AgentActivation } {
  const stack = new Stack(new App(), 'Stack', { env: ENV });
  const cid = ActivationSecret.fromSecret(secretsmanager.Secret.fromSecretCompleteArn(stack, 'Cid', SECRET_ARN));
  return {
    stack,
    activation: {
      command: [ActivationArgument.literal(TOOL), ActivationArgument.literal('-s'), ActivationArgument.literal('-f'), ActivationArgument.secretValue(cid, { prefix: '--cid=' })],
      beforeServiceStart,
    },
  };
}

function bootWithFalconctl(): Promise<Host> {
  return bootWithActivation({ [SECRET_ARN]: { value: CID, version: 'v-1' } }, TOOL, FAKE_FALCONCTL);
}

describe('an agent whose service does not stay up until activated', () => {
  test('beforeServiceStart: activated between the install and the health-checked start; a failed activation leaves it installed, unchecked, and the next Install starts it; Reactivate restarts it', async () => {
    host = await bootWithFalconctl();
    const agent = declare(host, buildDeb({ version: '1.0.0-1', requiresFile: CID_FILE }), 'DEB', '1.0.0');
    const { stack, activation } = falconActivation(true);
    const lines = activationScript([agent], stack, activation);
    const runs = (): number => Number(host!.exec('cat /root/tool.runs 2>/dev/null | wc -l').stdout.trim());

    // WHEN the activation fails: activation-failed, the package installed, no health check
    host.exec('echo 3 > /etc/fake-activation-exit');
    const failed = await host.runScript([], { action: 'Install' }, {}, lines);
    expect(outcome(failed)).toMatchObject({ outcome: 'activation-failed', version: '1.0.0-1', activation: 'failed', activationExitCode: '3' });
    expect(failed.status).toBe(24);
    expect(failed.stderr).not.toContain('rolling back');
    expect(host.exec('dpkg-query -W -f=\'${Version}\' test-agent').stdout).toBe('1.0.0-1');

    // THEN the next Install activates it before starting the service, which stays up
    host.exec('rm /etc/fake-activation-exit');
    const retried = await host.runScript([], { action: 'Install' }, {}, lines);
    expect(outcome(retried)).toMatchObject({ outcome: 'repaired', activation: 'activated', activationExitCode: '0' });
    expect(host.exec('systemctl is-active test-agent').stdout.trim()).toBe('active');
    expect(runs()).toBe(2);

    // AND a fresh host installs and activates in one run
    await host.dispose();
    host = await bootWithFalconctl();
    const fresh = declare(host, buildDeb({ version: '1.0.0-1', requiresFile: CID_FILE }), 'DEB', '1.0.0');
    const freshLines = activationScript([fresh], stack, activation);
    const installed = await host.runScript([], { action: 'Install' }, {}, freshLines);
    expect(outcome(installed)).toMatchObject({ outcome: 'installed', activation: 'activated', activationExitCode: '0' });
    expect(installed.status).toBe(0);
    expect(host.exec(`cat ${CID_FILE}`).stdout).toBe(CID);
    expect(host.exec('systemctl is-active test-agent').stdout.trim()).toBe('active');
    expect(runs()).toBe(1);
    const log = installed.stdout + installed.stderr;
    expect(log).not.toContain(CID);
    expect(log).not.toContain('rolling back');

    // AND an Install of the activated agent runs nothing again
    const again = await host.runScript([], { action: 'Install' }, {}, freshLines);
    expect(outcome(again)).toMatchObject({ outcome: 'already-installed', activation: 'already-activated' });
    expect(runs()).toBe(1);

    // AND Reactivate activates again and restarts the service, which reads the CID at start
    const since = host.exec('systemctl show -p ActiveEnterTimestampMonotonic --value test-agent').stdout.trim();
    const reactivated = await host.runScript([], { action: 'Reactivate' }, {}, freshLines);
    expect(outcome(reactivated)).toMatchObject({ action: 'Reactivate', outcome: 'already-installed', activation: 'activated' });
    expect(reactivated.stderr).toContain('restarting service test-agent, which reads its activation at start');
    expect(host.exec('systemctl show -p ActiveEnterTimestampMonotonic --value test-agent').stdout.trim()).not.toBe(since);
    expect(runs()).toBe(2);
  });

  test('without beforeServiceStart the health check fails first: rolled back, the activation never ran', async () => {
    host = await bootWithFalconctl();
    const agent = declare(host, buildDeb({ version: '1.0.0-1', requiresFile: CID_FILE }), 'DEB', '1.0.0');
    const { stack, activation } = falconActivation(false);
    const run = await host.runScript([], { action: 'Install' }, {}, activationScript([agent], stack, activation));
    expect(outcome(run)).toMatchObject({ outcome: 'rolled-back', activation: 'not-run' });
    expect(run.status).toBe(20);
    expect(host.exec('test -e /root/tool.runs', { allowFailure: true }).status).not.toBe(0);
  });
});
