/*
 * What a Lambda cold start pays to load each handler bundle: a fresh `node` process requires
 * the bundle and reports how long `require` took. Both builds are made in this run, from the
 * same sources, into a temporary folder: the bundles as releases up to 0.1.0 shipped them
 * (unminified, the SDK's CommonJS builds) and as `npm run bundle` makes them now (minified,
 * tree-shaken). Loads alternate between the two so that machine noise hits both alike.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { bundleAll } = require('../scripts/bundle-handlers.js') as {
  bundleAll: (root: string, options: { outDir: string; optimize: boolean }) => Promise<Array<{ area: string; name: string }>>;
};

const ROOT = path.join(__dirname, '..');
const LOADS = 7;

/** Milliseconds a fresh node process spends in `require(bundle)`. */
function loadMillis(bundle: string): number {
  const script = `const t = process.hrtime.bigint(); require(${JSON.stringify(bundle)}); `
    + 'process.stdout.write(String(Number(process.hrtime.bigint() - t) / 1e6));';
  return Number(execFileSync(process.execPath, ['-e', script], {
    env: { ...process.env, AWS_REGION: 'us-east-1', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
  }).toString());
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function dirBytes(dir: string): number {
  return fs.readdirSync(dir, { withFileTypes: true }).reduce((sum, e) => {
    const p = path.join(dir, e.name);
    return sum + (e.isDirectory() ? dirBytes(p) : fs.statSync(p).size);
  }, 0);
}

const mb = (bytes: number): string => (bytes / 1024 / 1024).toFixed(2);

export async function run(): Promise<void> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'handler-load-'));
  try {
    const before = path.join(tmp, 'before');
    const after = path.join(tmp, 'after');
    const entries = await bundleAll(ROOT, { outDir: before, optimize: false });
    await bundleAll(ROOT, { outDir: after, optimize: true });

    console.log(`Median of ${LOADS} loads, each in a fresh node ${process.version} process.`);
    console.log('| handler | before: size (MB) | before: load (ms) | now: size (MB) | now: load (ms) | load ratio |');
    console.log('| --- | --- | --- | --- | --- | --- |');
    let worst = 0;
    for (const { area, name } of entries) {
      const bundles = [path.join(before, area, name, 'index.js'), path.join(after, area, name, 'index.js')];
      loadMillis(bundles[0]); // the first load also warms the file cache; not counted
      loadMillis(bundles[1]);
      const times: [number[], number[]] = [[], []];
      for (let i = 0; i < LOADS; i++) {
        times[0].push(loadMillis(bundles[0]));
        times[1].push(loadMillis(bundles[1]));
      }
      const [b, a] = [median(times[0]), median(times[1])];
      worst = Math.max(worst, a / b);
      console.log(`| ${area}/${name} | ${mb(fs.statSync(bundles[0]).size)} | ${b.toFixed(0)} | `
        + `${mb(fs.statSync(bundles[1]).size)} | ${a.toFixed(0)} | ${(a / b).toFixed(2)} |`);
    }
    console.log(`| all assets | ${mb(dirBytes(before))} | | ${mb(dirBytes(after))} (with notices) | | worst ${worst.toFixed(2)} |`);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
