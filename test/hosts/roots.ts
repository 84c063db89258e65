/*
 * The pristine Debian 12 root every test host starts from: built once per run of the suite
 * with debootstrap from Debian's packages, with systemd, curl, rpm and the test CA.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The name the package server answers to inside each host (in the root's /etc/hosts). */
export const PACKAGE_HOST = 'packages.agent-fleet.test';

/** Units a container needs none of: they only wait for terminals or kernel features. */
const MASKED_UNITS = [
  'getty.target', 'console-getty.service', 'systemd-logind.service', 'e2scrub_reap.service',
  'dev-hugepages.mount', 'sys-kernel-debug.mount', 'sys-kernel-tracing.mount', 'systemd-journal-flush.service',
  'apt-daily.timer', 'apt-daily-upgrade.timer',
];

function run(command: string, args: string[], options: { cwd?: string } = {}): void {
  execFileSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'], ...options });
}

/** A test CA and a certificate for PACKAGE_HOST signed by it, in `dir`. */
export function makeCertificates(dir: string): void {
  run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=cdk-agent-fleet test CA',
    '-keyout', 'ca.key', '-out', 'ca.crt', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign'], { cwd: dir });
  run('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${PACKAGE_HOST}`, '-keyout', 'server.key', '-out', 'server.csr'], { cwd: dir });
  fs.writeFileSync(path.join(dir, 'server.ext'), `subjectAltName=DNS:${PACKAGE_HOST}\nextendedKeyUsage=serverAuth\n`);
  run('openssl', ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2',
    '-extfile', 'server.ext', '-out', 'server.crt'], { cwd: dir });
}

/** debootstrap --variant=minbase bookworm into `root`. */
export function buildPristineRoot(root: string): void {
  run('debootstrap', ['--variant=minbase', '--include=systemd,curl,ca-certificates,rpm,procps', 'bookworm', root]);
}

/**
 * What the tests add to the root (again on a root kept from an earlier run): masked units,
 * the test CA in the trust store, the package server's name.
 */
export function prepareRoot(root: string, certificates: string): void {
  run('systemctl', [`--root=${root}`, 'mask', ...MASKED_UNITS]);
  fs.copyFileSync(path.join(certificates, 'ca.crt'), path.join(root, 'usr/local/share/ca-certificates/cdk-agent-fleet-test-ca.crt'));
  run('chroot', [root, 'update-ca-certificates', '--fresh']);
  const hosts = path.join(root, 'etc/hosts');
  const current = fs.existsSync(hosts) ? fs.readFileSync(hosts, 'utf8') : '127.0.0.1 localhost\n';
  if (!current.includes(PACKAGE_HOST)) fs.writeFileSync(hosts, `${current}127.0.0.1 ${PACKAGE_HOST}\n`);
  fs.writeFileSync(path.join(root, 'etc/hostname'), 'agent-test-host\n');
}
