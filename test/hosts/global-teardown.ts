import * as fs from 'node:fs';

export default function globalTeardown(): void {
  const run = process.env.HOSTS_RUN_DIR;
  if (run) fs.rmSync(run, { recursive: true, force: true });
}
