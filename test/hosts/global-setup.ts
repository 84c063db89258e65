/*
 * Builds what every test host shares, once per run: the pristine root and the test CA.
 * HOSTS_PRISTINE_ROOT may name a root built by an earlier run (kept while developing).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildPristineRoot, makeCertificates, prepareRoot } from './roots';

export default function globalSetup(): void {
  if (process.getuid?.() !== 0) throw new Error('the real-host tests need root (namespaces, mounts, chroot)');
  const run = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-hosts-'));
  process.env.HOSTS_RUN_DIR = run;
  const certificates = path.join(run, 'certificates');
  fs.mkdirSync(certificates);
  makeCertificates(certificates);
  process.env.HOSTS_CERTIFICATES = certificates;
  const kept = process.env.HOSTS_PRISTINE_ROOT;
  if (kept && fs.existsSync(path.join(kept, 'lib/systemd/systemd'))) {
    prepareRoot(kept, certificates);
    return;
  }
  const root = path.join(run, 'pristine');
  const started = Date.now();
  buildPristineRoot(root);
  prepareRoot(root, certificates);
  process.stderr.write(`\nbuilt the pristine Debian root in ${Math.round((Date.now() - started) / 1000)} s\n`);
  process.env.HOSTS_PRISTINE_ROOT = root;
}
