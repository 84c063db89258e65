import * as fs from 'node:fs';
import * as path from 'node:path';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { nodejs24Runtime } from './cdk-compat';

/**
 * The one runtime every handler of the library runs on: the newest Node.js Lambda offers
 * (cdk-nag's AwsSolutions-L1), pinned so that a library release, not a synth, moves it.
 * The bundles target Node.js 20 syntax, which it runs unchanged.
 */
export const HANDLER_RUNTIME = nodejs24Runtime();

/** Where `npm run bundle` puts handler bundles; shipped with the package. */
export const ASSETS_DIR = path.join(__dirname, '..', '..', 'assets');

/**
 * The prebuilt bundle of the handler `lib/<area>/handler/<name>.ts`.
 *
 * Bundled by `scripts/bundle-handlers.js` when the library is built, so users' synth
 * needs neither esbuild nor Docker, and the asset hash is the same on every machine.
 */
export function handlerCode(area: string, name: string, assetsDir = ASSETS_DIR): lambda.Code {
  const dir = path.join(assetsDir, area, name);
  if (!fs.existsSync(path.join(dir, 'index.js'))) {
    throw new Error(`The bundle of handler ${area}/${name} is missing (${path.join(area, name, 'index.js')} under the package's assets folder). `
      + "In a checkout, run 'npm run bundle'; the published package ships it prebuilt.");
  }
  return lambda.Code.fromAsset(dir);
}
