/*
 * Activation with secrets on real hosts (issue 10): the install step reads a Secrets Manager
 * secret and a SecureString parameter from a stand-in that verifies every request's SigV4
 * signature independently (routes/secrets.js, with the credentials the test IMDS served), and
 * runs a fake vendor tool that sleeps while the test scans every process's command line and
 * environment for the secrets.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { App, Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { declare } from './agent';
import { activationScript, bootWithActivation, ENV } from './activation-host';
import { Host, outcome, ScriptRun } from './host';
import { buildDeb } from './packages';
import { ActivationArgument, ActivationSecret, AgentActivation, AgentInstallDocument } from '../../lib';

const SECRET_ARN = 'arn:aws:secretsmanager:us-east-1:111122223333:secret:trend/tenant-AbCdEf';
const PARAMETER_ARN = 'arn:aws:ssm:us-east-1:111122223333:parameter/trend/token';
/** Odd on purpose: quotes, backslashes, shell syntax, a tab, non-ASCII, an astral character. */
const TENANT = 'tenant "7c3f" \\ back/slash $(id) `x` é€😀';
const TOKEN = "tok'en\twith tab ✓ ;rm -rf / $HOME";
const SECRETS = [TENANT, TOKEN];
const TOOL = '/opt/ds_agent/dsa_control';
const QUERY = '/opt/ds_agent/dsa_query';

/**
 * A fake vendor tool: records its arguments, standard input and environment, prints what it
 * was given (the log must not show it), sleeps so the test can look at every process, and
 * exits with the status in /etc/fake-activation-exit.
 */
const FAKE_TOOL = [
  '#!/bin/sh',
  'printf "%s\\0" "$@" > /root/tool.args',
  'cat > /root/tool.stdin',
  'for f in "$@"; do case "$f" in --token-file=*) cat "${f#--token-file=}" > /root/tool.file ;; esac; done',
  'tr "\\0" "\\n" < /proc/$$/environ > /root/tool.environ',
  'echo "activating with $*"',
  'echo run >> /root/tool.runs',
  'touch /run/fake-tool-started',
  'sleep "$(cat /etc/fake-activation-sleep 2>/dev/null || echo 3)"',
  'exit "$(cat /etc/fake-activation-exit 2>/dev/null || echo 0)"',
].join('\n') + '\n';

let host: Host | undefined;
afterEach(async () => { await host?.dispose(); host = undefined; });

function secrets() {
  const stack = new Stack(new App(), 'Stack', { env: ENV });
  return {
    stack,
    tenant: ActivationSecret.fromSecret(secretsmanager.Secret.fromSecretCompleteArn(stack, 'Tenant', SECRET_ARN), { jsonField: 'tenantId' }),
    token: ActivationSecret.fromSecureStringParameter(ssm.StringParameter.fromSecureStringParameterAttributes(stack, 'Token', { parameterName: '/trend/token' })),
  };
}

/** Trend's activation: the tenant id and token inside dsa_control's arguments (its one way). */
function trendActivation(withCheck = false): { stack: Stack; activation: AgentActivation } {
  const { stack, tenant, token } = secrets();
  return {
    stack,
    activation: {
      command: [
        ActivationArgument.literal(TOOL), ActivationArgument.literal('-a'),
        ActivationArgument.literal('dsm://agents.workload.us-1.cloudone.trendmicro.com:443/'),
        ActivationArgument.secretValue(tenant, { prefix: 'tenantID:' }), ActivationArgument.secretValue(token, { prefix: 'token:' }),
      ],
      check: withCheck ? { command: [QUERY, '-c', 'GetAgentStatus'], outputLacks: 'agentCertHash: D0:68:DE' } : undefined,
    },
  };
}

async function bootWithSecrets(): Promise<Host> {
  return bootWithActivation({
    [SECRET_ARN]: { value: JSON.stringify({ tenantId: TENANT, other: 'not this one' }), version: 'v-1' },
    [PARAMETER_ARN]: { value: TOKEN, version: '3' },
  }, TOOL, FAKE_TOOL);
}

interface Sighting { readonly pid: number; readonly where: 'cmdline' | 'environ'; readonly argv: string[] }

/** Every process on this machine (the host's included) whose command line or environment holds a secret. */
function scanProcesses(values: string[]): Sighting[] {
  const found: Sighting[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    for (const where of ['cmdline', 'environ'] as const) {
      let content: Buffer;
      try { content = fs.readFileSync(`/proc/${entry}/${where}`); } catch { continue; }
      if (values.some((value) => content.includes(Buffer.from(value)))) {
        let argv: string[] = [];
        try { argv = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean); } catch { /* gone */ }
        found.push({ pid: Number(entry), where, argv });
      }
    }
  }
  return found;
}

/** Runs the script while scanning every process, until it ends. */
async function runWatched(target: Host, lines: string[], action = 'Install'): Promise<{ run: ScriptRun; sightings: Sighting[]; scans: number }> {
  const running = target.startScript([], { action }, {}, lines);
  let ended = false;
  const sightings: Sighting[] = [];
  let scans = 0;
  void running.done.then(() => { ended = true; });
  while (!ended) {
    sightings.push(...scanProcesses(SECRETS));
    scans++;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return { run: await running.done, sightings, scans };
}

/** Every file the host wrote to its disk (the overlay's upper layer), except the fake tool's records. */
function filesHolding(target: Host, values: string[]): string[] {
  const upper = path.join(path.dirname(target.share), 'layer', 'upper');
  const hits: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(file);
      else if (entry.isFile() && !/^root\/tool\./.test(path.relative(upper, file))) {
        const content = fs.readFileSync(file);
        if (values.some((value) => content.includes(Buffer.from(value)))) hits.push(path.relative(upper, file));
      }
    }
  };
  walk(upper);
  return hits;
}

function secretRequests(target: Host): Array<{ target: string; body: string; verdict: string; accessKeyId: string }> {
  const file = path.join(target.share, 'secrets-requests.log');
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
}

describe('a Trend-style activation with secrets', () => {
  test('reads both secrets with signed requests and activates, the values only in the vendor tool\'s own arguments', async () => {
    host = await bootWithSecrets();
    const agent = declare(host, buildDeb({ version: '1.0.0-1' }), 'DEB', '1.0.0');
    const { stack, activation } = trendActivation();
    const lines = activationScript([agent], stack, activation);

    const { run, sightings, scans } = await runWatched(host, lines);

    expect(outcome(run)).toMatchObject({ outcome: 'installed', activation: 'activated', activationExitCode: '0' });
    // The tool got the values intact (quotes, backslashes, tab, non-ASCII), as separate arguments.
    const args = host.exec('cat /root/tool.args').stdout.split('\0').slice(0, -1);
    expect(args).toEqual(['-a', 'dsm://agents.workload.us-1.cloudone.trendmicro.com:443/', `tenantID:${TENANT}`, `token:${TOKEN}`]);
    // Its environment: PATH and LANG, nothing of the run (no proxy, no SSM variables, no secret).
    const environment = host.exec('cat /root/tool.environ').stdout.trim().split('\n').map((l) => l.slice(0, l.indexOf('=')));
    expect(environment.filter((name) => !['PATH', 'LANG', 'PWD', 'SHLVL', '_'].includes(name))).toEqual([]);

    // While it ran, the values were in no environment, and in no command line but the tool's.
    expect(scans).toBeGreaterThan(20);
    expect(sightings.length).toBeGreaterThan(0); // the tool itself: the documented exception
    for (const sighting of sightings) {
      expect(sighting).toMatchObject({ where: 'cmdline' });
      expect(sighting.argv.slice(0, 2)).toContain(TOOL);
    }

    // Both requests verified by the stand-in; only the ARN (and WithDecryption) in the request.
    const requests = secretRequests(host);
    expect(requests.map((r) => [r.target, r.verdict, r.accessKeyId])).toEqual([
      ['secretsmanager.GetSecretValue', 'ok', 'ASIAHOSTTEST'], ['AmazonSSM.GetParameter', 'ok', 'ASIAHOSTTEST'],
    ]);
    expect(requests.map((r) => JSON.parse(r.body))).toEqual([{ SecretId: SECRET_ARN }, { Name: PARAMETER_ARN, WithDecryption: true }]);

    // The log shows the tool's output with the values replaced; no value anywhere in it.
    const log = run.stdout + run.stderr;
    for (const value of SECRETS) expect(log).not.toContain(value);
    expect(log).toContain('activating with -a dsm://agents.workload.us-1.cloudone.trendmicro.com:443/ tenantID:<redacted> token:<redacted>');
    expect(log).toContain(`activating: ${TOOL} -a dsm://agents.workload.us-1.cloudone.trendmicro.com:443/ tenantID:<secret 0> token:<secret 1>`);
    // Nothing on disk holds them (secret files are gone), nor does the script or a template.
    expect(filesHolding(host, SECRETS)).toEqual([]);
    expect(host.exec('ls -A /var/lib/cdk-agent-fleet/work/').stdout.trim()).toBe('');
    for (const value of SECRETS) expect(lines.join('\n')).not.toContain(value);
    const document = new AgentInstallDocument(stack, 'Document', { packages: [agent], activation });
    expect(JSON.stringify(Template.fromStack(stack).toJSON())).not.toContain('tenant "7c3f"');
    expect(document.activation).toBe(activation);
  });
});

describe('once, again on request, and its own outcome', () => {
  test('activation-failed (24) with the tool\'s status; retried by the next Install; then never again until Reactivate; a secret that cannot be read', async () => {
    host = await bootWithSecrets();
    const agent = declare(host, buildDeb({ version: '1.0.0-1' }), 'DEB', '1.0.0');
    const { stack, activation } = trendActivation();
    const lines = activationScript([agent], stack, activation);
    host.exec('echo 0 > /etc/fake-activation-sleep && echo 3 > /etc/fake-activation-exit');
    const runs = (): number => Number(host!.exec('cat /root/tool.runs 2>/dev/null | wc -l').stdout.trim());

    // WHEN the tool fails: the agent stays installed, the outcome says the activation failed
    const failed = await host.runScript([], { action: 'Install' }, {}, lines);
    expect(outcome(failed)).toMatchObject({ outcome: 'activation-failed', version: '1.0.0-1', activation: 'failed', activationExitCode: '3' });
    expect(failed.status).toBe(24);
    expect(failed.stderr).toContain('the activation command exited 3');

    // THEN the next Install activates it (nothing was recorded)
    host.exec('echo 0 > /etc/fake-activation-exit');
    const retried = await host.runScript([], { action: 'Install' }, {}, lines);
    expect(outcome(retried)).toMatchObject({ outcome: 'already-installed', activation: 'activated', activationExitCode: '0' });
    expect(runs()).toBe(2);

    // AND repeated Installs neither run the tool nor read the secrets again
    const requestsBefore = secretRequests(host).length;
    for (let i = 0; i < 2; i++) {
      const again = await host.runScript([], { action: 'Install' }, {}, lines);
      expect(outcome(again)).toMatchObject({ outcome: 'already-installed', activation: 'already-activated', activationExitCode: '' });
      expect(again.status).toBe(0);
    }
    expect(runs()).toBe(2);
    expect(secretRequests(host)).toHaveLength(requestsBefore);

    // AND Reactivate (after a rotation) runs it again, with the new values
    const rotated = 'rotated-token-2';
    fs.writeFileSync(path.join(host.share, 'secrets.json'), JSON.stringify({
      [SECRET_ARN]: { value: JSON.stringify({ tenantId: TENANT }), version: 'v-2' }, [PARAMETER_ARN]: { value: rotated, version: '4' },
    }));
    const reactivated = await host.runScript([], { action: 'Reactivate' }, {}, lines);
    expect(outcome(reactivated)).toMatchObject({ action: 'Reactivate', outcome: 'already-installed', activation: 'activated' });
    expect(runs()).toBe(3);
    expect(host.exec('cat /root/tool.args').stdout.split('\0')).toContain(`token:${rotated}`);

    // AND a secret that cannot be read fails the activation without running the tool
    fs.writeFileSync(path.join(host.share, 'secrets.json'), JSON.stringify({ [SECRET_ARN]: { value: JSON.stringify({ tenantId: TENANT }) } }));
    const unreadable = await host.runScript([], { action: 'Reactivate' }, {}, lines);
    expect(outcome(unreadable)).toMatchObject({ outcome: 'activation-failed', activation: 'secret-unavailable', activationExitCode: '' });
    expect(unreadable.status).toBe(24);
    expect(unreadable.stderr).toContain(`answered 400 ParameterNotFound for the SecureString parameter ${PARAMETER_ARN}`);
    expect(runs()).toBe(3);
    expect(secretRequests(host).slice(-1)[0]).toMatchObject({ target: 'AmazonSSM.GetParameter', verdict: 'not found' });

    // AND a tool that hangs is stopped at the activation's timeout (124), and the run still ends with its line
    fs.writeFileSync(path.join(host.share, 'secrets.json'), JSON.stringify({
      [SECRET_ARN]: { value: JSON.stringify({ tenantId: TENANT }) }, [PARAMETER_ARN]: { value: TOKEN },
    }));
    host.exec('echo 60 > /etc/fake-activation-sleep');
    const hanging = await host.runScript([], { action: 'Reactivate' }, {}, activationScript([agent], stack, { ...activation, timeout: Duration.seconds(10) }));
    expect(outcome(hanging)).toMatchObject({ outcome: 'activation-failed', activation: 'failed', activationExitCode: '124' });
    expect(hanging.stderr).toContain('the activation command did not finish within 10s');
    expect(host.exec("pgrep -fx 'sleep 60' || true").stdout.trim()).toBe('');
  });

  test('a secret passed as a file and on standard input reaches no command line and no environment; an activated agent (the check says so) is left alone', async () => {
    host = await bootWithSecrets();
    const agent = declare(host, buildDeb({ version: '1.0.0-1' }), 'DEB', '1.0.0');
    const { stack, tenant, token } = secrets();
    const activation: AgentActivation = {
      command: [ActivationArgument.literal(TOOL), ActivationArgument.literal('enroll'), ActivationArgument.secretFile(token, { prefix: '--token-file=' })],
      stdin: tenant,
      check: { command: [QUERY, '-c', 'GetAgentStatus'], outputLacks: 'agentCertHash: D0:68:DE' },
    };
    const lines = activationScript([agent], stack, activation);
    // A fake dsa_query: not activated until the tool has run once.
    const query = path.join(host.share, 'fake-query');
    fs.writeFileSync(query, '#!/bin/sh\nif [ -f /root/tool.runs ]; then echo "agentCertHash: 4A:11"; else echo "agentCertHash: D0:68:DE:48"; fi\n');
    host.put(query, QUERY);
    host.exec(`chmod 755 ${QUERY}`);

    const { run, sightings, scans } = await runWatched(host, lines);

    expect(outcome(run)).toMatchObject({ outcome: 'installed', activation: 'activated', activationExitCode: '0' });
    expect(scans).toBeGreaterThan(20);
    expect(sightings).toEqual([]);
    const file = host.exec('cat /root/tool.args').stdout.split('\0')[1];
    expect(file).toMatch(/^--token-file=\/var\/lib\/cdk-agent-fleet\/work\/run\.[A-Za-z0-9]+\/secret-file-2$/);
    expect(host.exec('cat /root/tool.file').stdout).toBe(TOKEN);
    expect(host.exec('cat /root/tool.stdin').stdout).toBe(`${TENANT}\n`);
    expect(host.exec(`test -e ${file.slice('--token-file='.length)}`, { allowFailure: true }).status).not.toBe(0);
    expect(filesHolding(host, SECRETS)).toEqual([]);

    // WHEN the activation record is lost but the agent says it is activated
    host.exec('rm /var/lib/cdk-agent-fleet/test-agent/activation');
    const checked = await host.runScript([], { action: 'Install' }, {}, lines);

    // THEN the tool does not run again
    expect(outcome(checked)).toMatchObject({ outcome: 'already-installed', activation: 'already-activated' });
    expect(checked.stderr).toContain('the agent is activated already (the activation check says so)');
    expect(host.exec('wc -l < /root/tool.runs').stdout.trim()).toBe('1');
  });
});
