/*
 * The instance metadata service modes and the tag semantics on a real host: IMDSv2 only,
 * IMDSv1 only, a token request that hangs, no metadata service, tags on and off.
 */
import { declare } from './agent';
import { Host, outcome } from './host';
import { buildDeb } from './packages';

let host: Host | undefined;
afterAll(async () => { await host?.dispose(); });

test('IMDS modes and tags decide whether the agent is managed; nothing is installed when it is not', async () => {
  host = await Host.boot({ imds: 'v2' });
  const agent = declare(host, buildDeb({ version: '1.0.0-1' }), 'DEB', '1.0.0');

  // IMDSv2 only, no tags (metadata tags off): TAGGED_ONLY leaves the host alone.
  expect(outcome(await host.runScript([agent], { action: 'Install', mode: 'TAGGED_ONLY' })))
    .toEqual({ action: 'Install', outcome: 'not-targeted', version: '', imdsVersion: 'v2', tag: 'absent', activation: 'none', activationExitCode: '' });

  // IMDSv1 only, tagged false: excluded, and the log asks for IMDSv2.
  host.setImds('v1');
  host.setTag('SecurityAgentManaged', 'false');
  const v1 = await host.runScript([agent]);
  expect(outcome(v1)).toEqual({ action: 'Install', outcome: 'excluded', version: '', imdsVersion: 'v1', tag: 'false', activation: 'none', activationExitCode: '' });
  expect(v1.stderr).toContain('Require IMDSv2 (HttpTokens=required)');

  // A token request that never answers: the run gives up on it after 5 s and uses IMDSv1.
  host.setImds('hang');
  host.setTag('SecurityAgentManaged', 'yes');
  const hang = await host.runScript([agent], { action: 'Install', mode: 'TAGGED_ONLY' });
  expect(outcome(hang)).toEqual({ action: 'Install', outcome: 'not-targeted', version: '', imdsVersion: 'v1', tag: 'misconfigured', activation: 'none', activationExitCode: '' });

  // No metadata service: an exclusion cannot be ruled out, so nothing is installed.
  host.setImds('none');
  const none = await host.runScript([agent]);
  expect(outcome(none)).toEqual({ action: 'Install', outcome: 'imds-unavailable', version: '', imdsVersion: 'none', tag: 'unknown', activation: 'none', activationExitCode: '' });
  expect(none.status).toBe(10);
  expect(host.installedVersion('test-agent')).toBeUndefined();
  expect(host.requests().filter((r) => r.kind === 'https')).toEqual([]);
});
