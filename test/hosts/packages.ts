/*
 * Real .deb and .rpm packages of a tiny agent, built by the tests: a daemon, its systemd
 * unit, a conffile, and maintainer scripts that can be told to fail, to take their time,
 * or to leave a background process behind.
 */
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface AgentBuild {
  /** Package and service name. @default 'test-agent' */
  readonly name?: string;
  /** The full version: `[epoch:]version-release`, e.g. `1:7.0.0-1`. */
  readonly version: string;
  /** The daemon exits with 1 after this many seconds (systemd restarts it: a crash loop). */
  readonly crashAfterSeconds?: number;
  /** The post-install script fails. */
  readonly postinstFails?: boolean;
  /** The post-install script takes this long (holding the package manager's lock). */
  readonly postinstSeconds?: number;
  /** The post-install script starts a helper that keeps running, as some agents' do. */
  readonly postinstStartsHelper?: boolean;
  /** The pre-removal script takes this long. */
  readonly prermSeconds?: number;
  /** The daemon exits with 1 at once unless this file exists (an agent that must be activated first). */
  readonly requiresFile?: string;
}

export interface BuiltPackage {
  readonly file: string;
  readonly sha256: string;
  readonly name: string;
}

function daemon(build: AgentBuild): string {
  const crash = build.crashAfterSeconds !== undefined ? `sleep ${build.crashAfterSeconds}\necho "crashing" >&2\nexit 1\n` : 'exec sleep infinity\n';
  const required = build.requiresFile ? `if [ ! -e ${build.requiresFile} ]; then echo "not activated: no ${build.requiresFile}" >&2; exit 1; fi\n` : '';
  return `#!/bin/sh\n# test agent ${build.version}\n. /etc/${name(build)}/agent.conf\n${required}echo "agent ${build.version} started"\n${crash}`;
}

function unit(build: AgentBuild): string {
  return `[Unit]\nDescription=Test security agent\n\n[Service]\nExecStart=/usr/sbin/${name(build)}d\nRestart=on-failure\nRestartSec=1\n\n[Install]\nWantedBy=multi-user.target\n`;
}

/** The post-install script: the same for dpkg and rpm. */
function postinst(build: AgentBuild): string {
  // Marks when it starts, so tests can act while it runs.
  const lines = [`touch /run/${name(build)}-postinst-started`, 'systemctl daemon-reload || true'];
  if (build.postinstStartsHelper) {
    // A helper that keeps whatever the package manager gave it, like daemons started this way.
    lines.push(`nohup sleep 3600 >/dev/null 2>&1 &`, `echo $! > /run/${name(build)}-helper.pid`);
  }
  if (build.postinstSeconds) lines.push(`sleep ${build.postinstSeconds}`);
  if (build.postinstFails) lines.push('echo "postinst: configured to fail" >&2', 'exit 1');
  return lines.join('\n') + '\n';
}

function prerm(build: AgentBuild): string {
  const lines = [`touch /run/${name(build)}-prerm-started`, `systemctl stop ${name(build)} 2>/dev/null || true`];
  if (build.prermSeconds) lines.push(`sleep ${build.prermSeconds}`);
  return lines.join('\n') + '\n';
}

function name(build: AgentBuild): string {
  return build.name ?? 'test-agent';
}

function sha256(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

let builds = 0;
/**
 * A fresh folder for one build. Unique across test files: jest loads this module anew for each
 * file, so a counter alone would hand a later file an earlier file's folder, RPMS and all.
 */
function workDir(): string {
  const parent = path.join(process.env.HOSTS_RUN_DIR!, 'packages');
  fs.mkdirSync(parent, { recursive: true });
  return fs.mkdtempSync(path.join(parent, `${++builds}-`));
}

function write(file: string, content: string, mode = 0o644): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, content, { mode });
}

/** A .deb built with dpkg-deb. */
export function buildDeb(build: AgentBuild): BuiltPackage {
  const dir = workDir();
  const root = path.join(dir, 'root');
  const n = name(build);
  write(path.join(root, `usr/sbin/${n}d`), daemon(build), 0o755);
  write(path.join(root, `lib/systemd/system/${n}.service`), unit(build));
  write(path.join(root, `etc/${n}/agent.conf`), 'LOG_LEVEL=info\n');
  const arch = execFileSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).trim();
  write(path.join(root, 'DEBIAN/control'), `Package: ${n}\nVersion: ${build.version}\nArchitecture: ${arch}\nMaintainer: cdk-agent-fleet tests <tests@agent-fleet.test>\nDescription: test security agent\n`);
  write(path.join(root, 'DEBIAN/conffiles'), `/etc/${n}/agent.conf\n`);
  write(path.join(root, 'DEBIAN/postinst'), `#!/bin/sh\nset -e\n${postinst(build)}`, 0o755);
  write(path.join(root, 'DEBIAN/prerm'), `#!/bin/sh\n${prerm(build)}`, 0o755);
  const file = path.join(dir, `${n}_${build.version.replace(/^\d+:/, '')}_${arch}.deb`);
  execFileSync('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', root, file], { stdio: 'ignore' });
  return { file, sha256: sha256(file), name: n };
}

/** An .rpm built with rpmbuild (noarch, no automatic dependencies). */
export function buildRpm(build: AgentBuild): BuiltPackage {
  const dir = workDir();
  const n = name(build);
  const match = /^(?:(\d+):)?([^-]+)-(.+)$/.exec(build.version);
  if (!match) throw new Error(`an rpm version needs a release: ${build.version}`);
  const [, epoch, version, release] = match;
  const sources = path.join(dir, 'SOURCES');
  write(path.join(sources, 'daemon'), daemon(build), 0o755);
  write(path.join(sources, 'unit'), unit(build));
  write(path.join(sources, 'conf'), 'LOG_LEVEL=info\n');
  const spec = [
    `Name: ${n}`, `Version: ${version}`, `Release: ${release}`, ...(epoch ? [`Epoch: ${epoch}`] : []),
    'Summary: test security agent', 'License: Apache-2.0', 'BuildArch: noarch', 'AutoReqProv: no',
    '%description', 'test security agent',
    '%install',
    `install -D -m 0755 %{_sourcedir}/daemon %{buildroot}/usr/sbin/${n}d`,
    `install -D -m 0644 %{_sourcedir}/unit %{buildroot}/usr/lib/systemd/system/${n}.service`,
    `install -D -m 0644 %{_sourcedir}/conf %{buildroot}/etc/${n}/agent.conf`,
    '%files', `/usr/sbin/${n}d`, `/usr/lib/systemd/system/${n}.service`, `%config(noreplace) /etc/${n}/agent.conf`,
    '%post', postinst(build),
    '%preun', prerm(build),
  ].join('\n') + '\n';
  write(path.join(dir, 'agent.spec'), spec);
  execFileSync('rpmbuild', ['-bb', '--define', `_topdir ${dir}`, '--define', '_binary_payload w9.gzdio', path.join(dir, 'agent.spec')], { stdio: 'ignore' });
  const rpms = path.join(dir, 'RPMS/noarch');
  const file = path.join(rpms, fs.readdirSync(rpms)[0]);
  return { file, sha256: sha256(file), name: n };
}

/**
 * What an RPM host's own packages would provide (the shell the scriptlets run with), so
 * that rpm's dependency check passes in a root whose rpm database is otherwise empty.
 */
export function buildRpmBase(): BuiltPackage {
  const dir = workDir();
  const spec = ['Name: test-host-base', 'Version: 1', 'Release: 1', 'Summary: what the base system provides', 'License: Apache-2.0',
    'BuildArch: noarch', 'Provides: /bin/sh', '%description', 'base', '%files'].join('\n') + '\n';
  write(path.join(dir, 'base.spec'), spec);
  execFileSync('rpmbuild', ['-bb', '--define', `_topdir ${dir}`, path.join(dir, 'base.spec')], { stdio: 'ignore' });
  const rpms = path.join(dir, 'RPMS/noarch');
  const file = path.join(rpms, fs.readdirSync(rpms)[0]);
  return { file, sha256: sha256(file), name: 'test-host-base' };
}
