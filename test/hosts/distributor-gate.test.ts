/*
 * The Linux step of a Distributor document on a real host (systemd, the test IMDS): it decides
 * by the tag whether the aws:configurePackage step after it runs. Exit 0 lets it run; 168 and
 * 169 make SSM Agent skip it, as a success or a failure (amazon-ssm-agent,
 * agent/contracts/model.go ExitWithSuccess / ExitWithFailure).
 */
import { Host, ScriptRun } from './host';
import { DistributorPackage } from '../../lib';

let host: Host | undefined;
afterEach(async () => { await host?.dispose(); host = undefined; });

const guardDuty = DistributorPackage.awsOwned('AmazonGuardDuty-RuntimeMonitoringSsmPlugin', { serviceName: 'test-agent' });

function gate(run: ScriptRun): [string | undefined, number | null] {
  return [run.result?.outcome, run.status];
}

describe('the decision step of a Distributor document, on a real host', () => {
  test('proceeds (0) only where the tag semantics say so; otherwise stops the document as a success (168) or a failure (169)', async () => {
    host = await Host.boot({ format: 'DEB', tags: { GuardDutyManaged: 'true' } });
    const run = (parameters: Record<string, string>) => host!.runScript([guardDuty], { tagKey: 'GuardDutyManaged', ...parameters });

    expect(gate(await run({ action: 'Install' }))).toEqual(['proceeding', 0]);
    expect(gate(await run({ action: 'Install', mode: 'TAGGED_ONLY' }))).toEqual(['proceeding', 0]);

    host.setTag('GuardDutyManaged', 'false');
    expect(gate(await run({ action: 'Install' }))).toEqual(['excluded', 168]);
    // Uninstall ignores the tag (the uninstall-when-excluded association relies on it).
    expect(gate(await run({ action: 'Uninstall' }))).toEqual(['proceeding', 0]);

    host.setTag('GuardDutyManaged', undefined);
    expect(gate(await run({ action: 'Install', mode: 'TAGGED_ONLY' }))).toEqual(['not-targeted', 168]);
    expect(gate(await run({ action: 'Install' }))).toEqual(['proceeding', 0]);

    // Verify never reaches the Distributor step: the service says.
    expect(gate(await run({ action: 'Verify' }))).toEqual(['not-installed', 169]);
    host.exec('printf "[Service]\\nExecStart=/bin/sleep infinity\\n" > /etc/systemd/system/test-agent.service && systemctl daemon-reload');
    expect(gate(await run({ action: 'Verify' }))).toEqual(['service-down', 169]);
    host.exec('systemctl start test-agent');
    expect(gate(await run({ action: 'Verify' }))).toEqual(['compliant', 168]);

    // An exclusion that cannot be ruled out is a failure, never an install.
    host.setImds('none');
    const blind = await run({ action: 'Install' });
    expect(gate(blind)).toEqual(['imds-unavailable', 169]);
  });
});
