/*
 * `npm run bench`: runs every bench/*.bench.ts in turn (or only those named on the
 * command line, e.g. `npm run bench -- imds`). Each exports `run(): Promise<void>` and
 * prints its own figures, as ratios measured side by side in the same run.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

async function main(): Promise<void> {
  const only = process.argv.slice(2);
  const files = fs.readdirSync(__dirname)
    .filter((f) => f.endsWith('.bench.ts'))
    .filter((f) => only.length === 0 || only.some((o) => f.startsWith(o)))
    .sort();
  if (files.length === 0) {
    throw new Error(`no benchmark matches ${only.join(', ')}`);
  }
  for (const file of files) {
    console.log(`\n## ${path.basename(file, '.bench.ts')}`);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const bench = require(path.join(__dirname, file)) as { run: () => Promise<void> };
    await bench.run();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
