/*
 * A throwaway test host: an overlay over the pristine Debian root, booted with systemd as
 * PID 1 of its own PID, mount and network namespaces (unshare), with the instance metadata
 * service on 169.254.169.254 and the package server inside that network namespace. Killing
 * the namespace's first process ends everything in it; the overlay's layer is then removed.
 */
import { ChildProcess, spawn, spawnSync, SpawnSyncReturns } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { renderLinuxScript, ScriptSettings } from '../../lib/install/install-scripts';
import { AgentPackage } from '../../lib';
import { buildRpmBase } from './packages';
import { interpolateParameters } from '../install/sandbox';

export type ImdsMode = 'v2' | 'v1' | 'hang' | 'none';

export interface HostOptions {
  /** The package manager the host has. RPM hosts: see rpm-host.ts. @default 'DEB' */
  readonly format?: 'DEB' | 'RPM';
  /** @default 'v2' */
  readonly imds?: ImdsMode;
  /** Instance tags in instance metadata. @default {} */
  readonly tags?: Record<string, string>;
}

/** One run of the install script. */
export interface ScriptRun {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** The JSON result line, when there is one. */
  readonly result?: Record<string, string>;
}

/** A run that is still going: its PID inside the host, and its end. */
export interface RunningScript {
  readonly pid: () => Promise<number>;
  readonly done: Promise<ScriptRun>;
}

/** Settings for the tests: short waits, the health window each test chooses. */
export const TEST_SETTINGS: ScriptSettings = {
  linuxStateDir: '/var/lib/cdk-agent-fleet',
  serviceCheckAttempts: 3,
  serviceCheckIntervalSeconds: 1,
  healthWindowSeconds: 3,
  lockWaitSeconds: 60,
  packageManagerWaitSeconds: 20,
};

const NODE = process.execPath;
const SERVER = path.join(__dirname, 'server.js');
const BOOT = path.join(__dirname, 'boot.sh');
/** The environment SSM Agent gives a command on Linux, more or less: nothing of ours. */
const SSM_ENV = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'LANG=C.UTF-8',
  'AWS_SSM_INSTANCE_ID=i-0123456789abcdef0', 'AWS_SSM_REGION_NAME=us-east-1'];

let counter = 0;

export class Host {
  /** Boots a host; resolves when systemd says the system is running. */
  public static async boot(options: HostOptions = {}): Promise<Host> {
    const runDir = process.env.HOSTS_RUN_DIR!;
    const dir = fs.mkdtempSync(path.join(runDir, `issue9-linux-host${++counter}-`));
    const host = new Host(dir, options);
    try {
      await host.start();
    } catch (error) {
      await host.dispose();
      throw error;
    }
    return host;
  }

  /** The directory shared with the host, at /mnt/test inside it. */
  public readonly share: string;
  private readonly dir: string;
  private namespace?: ChildProcess;
  private pid1 = 0;
  private runs = 0;

  private constructor(dir: string, private readonly options: HostOptions) {
    this.dir = dir;
    this.share = path.join(dir, 'share');
    for (const sub of ['layer/upper', 'layer/work', 'merged', 'share/www', 'share/tags', 'share/runs']) {
      fs.mkdirSync(path.join(dir, sub), { recursive: true });
    }
    const certificates = process.env.HOSTS_CERTIFICATES!;
    for (const file of ['server.key', 'server.crt']) fs.copyFileSync(path.join(certificates, file), path.join(this.share, file));
    this.setImds(options.imds ?? 'v2');
    this.setToken(`token-${crypto.randomBytes(12).toString('hex')}`);
    for (const [key, value] of Object.entries(options.tags ?? {})) this.setTag(key, value);
  }

  public setImds(mode: ImdsMode): void { fs.writeFileSync(path.join(this.share, 'imds-mode'), mode); }
  public setToken(token: string): void { fs.writeFileSync(path.join(this.share, 'token'), token); }
  public get token(): string { return fs.readFileSync(path.join(this.share, 'token'), 'utf8'); }
  public setTag(key: string, value: string | undefined): void {
    const file = path.join(this.share, 'tags', key);
    if (value === undefined) fs.rmSync(file, { force: true }); else fs.writeFileSync(file, value);
  }
  /** Slows every metadata answer down (to watch the processes that ask). */
  public setImdsDelay(ms: number): void { fs.writeFileSync(path.join(this.share, 'delay-ms'), String(ms)); }
  /** Serves a file at https://PACKAGE_HOST/<name>. */
  public serve(name: string, file: string): void { fs.copyFileSync(file, path.join(this.share, 'www', name)); }
  /** The requests the IMDS and package servers saw. */
  public requests(): Array<{ kind: string; method: string; url: string; token: string | null }> {
    const file = path.join(this.share, 'requests.log');
    return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
  }

  private async start(): Promise<void> {
    const pristine = process.env.HOSTS_PRISTINE_ROOT!;
    this.namespace = spawn('unshare', ['--pid', '--fork', '--kill-child', '--mount', '--net', '--propagation', 'private',
      BOOT, path.join(this.dir, 'merged'), pristine, path.join(this.dir, 'layer'), this.share, NODE, SERVER], { stdio: 'ignore' });
    const deadline = Date.now() + 120_000;
    while (!this.pid1) {
      if (Date.now() > deadline) throw new Error('the host did not start');
      await sleep(50);
      const children = readChildren(this.namespace.pid!);
      if (children.length === 1) this.pid1 = children[0];
    }
    // Wait for systemd itself (not boot.sh) to be PID 1, then for the boot to end.
    while (!fs.readFileSync(`/proc/${this.pid1}/cmdline`, 'utf8').includes('systemd')) {
      if (Date.now() > deadline) throw new Error('systemd did not start');
      await sleep(50);
    }
    let boot = await this.execAsync('systemctl is-system-running --wait');
    // systemd opens its socket a moment after it starts.
    while ((/Failed to connect to bus/.test(boot.stderr) || boot.stdout.trim() === 'offline') && Date.now() < deadline) {
      await sleep(100);
      boot = await this.execAsync('systemctl is-system-running --wait');
    }
    if (!['running', 'degraded'].includes(boot.stdout.trim())) throw new Error(`the host did not boot: ${boot.stdout}${boot.stderr}`);
    if (!fs.existsSync(path.join(this.share, 'server-ready'))) throw new Error(`the IMDS and package server did not start: ${this.file('server.log')}`);
    if (this.options.format === 'RPM') {
      this.exec(RPM_HOST_SETUP);
      this.put(buildRpmBase().file, '/root/base.rpm');
      this.exec('rpm -i /root/base.rpm');
    }
  }

  private file(name: string): string {
    const file = path.join(this.share, name);
    return fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  }

  private nsenter(): string[] {
    return ['-t', String(this.pid1), '-m', '-p', '-n', '-r', '-w'];
  }

  /** Runs a bash command as root inside the host; throws when it fails unless `allowFailure`. */
  public exec(command: string, options: { allowFailure?: boolean; timeoutMs?: number } = {}): SpawnSyncReturns<string> {
    const run = spawnSync('nsenter', [...this.nsenter(), '/usr/bin/env', '-i', ...SSM_ENV, '/bin/bash', '-c', command],
      { encoding: 'utf8', timeout: options.timeoutMs ?? 120_000 });
    if (!options.allowFailure && run.status !== 0) {
      throw new Error(`'${command}' failed with ${run.status ?? run.signal}:\n${run.stdout}\n${run.stderr}`);
    }
    return run;
  }

  public execAsync(command: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn('nsenter', [...this.nsenter(), '/usr/bin/env', '-i', ...SSM_ENV, '/bin/bash', '-c', command]);
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => { stdout += d; });
      child.stderr.on('data', (d) => { stderr += d; });
      child.on('close', (status) => resolve({ status, stdout, stderr }));
    });
  }

  /** Copies a file into the host (through the shared directory). */
  public put(file: string, at: string): void {
    const name = `put-${crypto.randomBytes(6).toString('hex')}`;
    fs.copyFileSync(file, path.join(this.share, name));
    this.exec(`install -D -m 0644 /mnt/test/${name} ${at} && rm /mnt/test/${name}`);
  }

  /**
   * Runs the document's Linux step the way SSM Agent does: the rendered script with the
   * parameters substituted, written to a file in an orchestration folder, and started with
   * `sh -c <file>` there, in a bare environment.
   */
  public startScript(packages: AgentPackage[], parameters: Record<string, string>, settings: Partial<ScriptSettings> = {}, script?: string[]): RunningScript {
    const id = ++this.runs;
    const lines = script ?? renderLinuxScript(packages, { ...TEST_SETTINGS, ...settings });
    const dir = path.join(this.share, 'runs', String(id));
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, '_script.sh'), interpolateParameters(lines, parameters).join('\n') + '\n', { mode: 0o700 });
    const orchestration = `/var/lib/amazon/ssm/i-0123456789abcdef0/document/orchestration/run-${id}/manageAgentOnLinux`;
    const pidFile = `/mnt/test/runs/${id}/pid`;
    const command = `mkdir -p ${orchestration} && install -m 0700 /mnt/test/runs/${id}/_script.sh ${orchestration}/_script.sh`
      // The leader of its own process group, as SSM Agent starts it (Setpgid).
      + ` && cd ${orchestration} && exec setsid -w /bin/sh -c 'echo $$ > ${pidFile}; exec "$0"' ${orchestration}/_script.sh`;
    const done = this.execAsync(command).then(({ status, stdout, stderr }): ScriptRun => {
      const last = stdout.trim().split('\n').pop() ?? '';
      let result: Record<string, string> | undefined;
      try { result = JSON.parse(last); } catch { result = undefined; }
      return { status, signal: null, stdout, stderr, result };
    });
    const pid = async (): Promise<number> => {
      const file = path.join(dir, 'pid');
      for (let i = 0; i < 600 && !fs.existsSync(file); i++) await sleep(50);
      return Number(fs.readFileSync(file, 'utf8'));
    };
    return { pid, done };
  }

  /** Runs the script to its end. */
  public runScript(packages: AgentPackage[], parameters: Record<string, string> = { action: 'Install' }, settings: Partial<ScriptSettings> = {}, script?: string[]): Promise<ScriptRun> {
    return this.startScript(packages, parameters, settings, script).done;
  }

  /** The installed version as dpkg or rpm reports it, or undefined. */
  public installedVersion(name: string): string | undefined {
    const command = this.options.format === 'RPM'
      ? `rpm -q --qf '%|EPOCH?{%{EPOCH}:}|%{VERSION}-%{RELEASE}' ${name}`
      : `dpkg-query -W -f='\${Status} \${Version}' ${name} | sed -n 's/^install ok installed //p' | grep .`;
    const run = this.exec(command, { allowFailure: true });
    return run.status === 0 ? run.stdout.trim() : undefined;
  }

  /** Waits until a file exists inside the host. */
  public async waitForFile(file: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.exec(`test -e ${file}`, { allowFailure: true }).status !== 0) {
      if (Date.now() > deadline) throw new Error(`${file} did not appear`);
      await sleep(200);
    }
  }

  /** systemd's view of a unit: ActiveState, NRestarts, MainPID. */
  public unit(name: string): Record<string, string> {
    const out = this.exec(`systemctl show -p ActiveState -p NRestarts -p MainPID -p ActiveEnterTimestampMonotonic ${name}`).stdout;
    return Object.fromEntries(out.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  }

  public async dispose(): Promise<void> {
    if (this.namespace?.pid) {
      const exited = new Promise((resolve) => this.namespace!.once('exit', resolve));
      this.namespace.kill('SIGKILL');
      await exited;
      // PID 1 of the namespace dies with its parent (--kill-child); wait for it to be gone.
      for (let i = 0; i < 200 && fs.existsSync(`/proc/${this.pid1}`); i++) await sleep(50);
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Turns the Debian root into an RPM host for the script: rpm with its own database, dpkg's
 * front ends gone, and a `dnf` that only exists (the script never calls dnf or yum; it only
 * checks that one is there, as on RHEL-family hosts). Debian's rpm refuses to run where
 * dpkg's status file exists, so that goes too.
 */
const RPM_HOST_SETUP = [
  'set -e',
  'rm -f /usr/bin/apt-get /usr/bin/dpkg-query',
  'mv /var/lib/dpkg/status /var/lib/dpkg/status.debian',
  'printf "#!/bin/sh\\necho dnf is not installed in this test host >&2\\nexit 1\\n" > /usr/bin/dnf && chmod 755 /usr/bin/dnf',
  'rpm --initdb',
].join('\n');

function readChildren(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The result line, with the log attached when it is not what the test expects. */
export function outcome(run: ScriptRun): Record<string, string> | string {
  return run.result ?? `no JSON line (status ${run.status})\n${run.stdout}\n${run.stderr}`;
}
