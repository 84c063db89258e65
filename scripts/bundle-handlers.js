#!/usr/bin/env node
/*
 * Bundles every Lambda handler of the library with esbuild, at build time, into
 * assets/<area>/<name>/index.js, which ships with the package. Users' synth then needs
 * neither esbuild nor Docker nor the network, and asset hashes do not depend on their machine.
 * Beside each bundle, THIRD-PARTY-NOTICES.txt lists the npm packages it includes, with
 * their licence texts.
 *
 * Entry points: each .ts file directly inside a lib/<area>/handler/ folder.
 * Sub-folders of handler/ hold code the entry points share.
 *
 * Usage: node scripts/bundle-handlers.js [--root DIR]
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const esbuild = require('esbuild');
const { renderNotices } = require('./third-party-notices');

const NOTICES_FILE = 'THIRD-PARTY-NOTICES.txt';

function findEntries(libDir) {
  const entries = [];
  for (const area of fs.readdirSync(libDir, { withFileTypes: true })) {
    if (!area.isDirectory()) continue;
    const handlerDir = path.join(libDir, area.name, 'handler');
    if (!fs.existsSync(handlerDir)) continue;
    for (const file of fs.readdirSync(handlerDir, { withFileTypes: true })) {
      if (file.isFile() && file.name.endsWith('.ts') && !file.name.endsWith('.d.ts')) {
        entries.push({ area: area.name, name: path.basename(file.name, '.ts'), file: path.join(handlerDir, file.name) });
      }
    }
  }
  return entries.sort((a, b) => `${a.area}/${a.name}`.localeCompare(`${b.area}/${b.name}`));
}

/**
 * Lets esbuild tree-shake the AWS SDK's generated schemas. Their shapes are top-level arrays
 * such as `[0, [() => List, { [_xN]: _VEIp }], 2]`, where `_xN` is a module constant holding a
 * string. esbuild cannot prove that a computed key has no side effects, so it keeps every
 * shape of the service (550 KB of EC2 shapes in each handler that sends one EC2 call).
 * Replacing the key by the string the constant holds (`{ "xmlName": _VEIp }`) means the same
 * object, and unused shapes then drop out.
 */
const sdkSchemaKeys = {
  name: 'sdk-schema-keys',
  setup(build) {
    build.onLoad({ filter: /[\\/]dist-es[\\/]schemas[\\/]schemas_\d+\.js$/ }, async (args) => {
      const source = await fs.promises.readFile(args.path, 'utf8');
      const strings = new Map();
      for (const [, name, literal] of source.matchAll(/^const (_\w+) = ("(?:[^"\\\n]|\\.)*");$/gm)) {
        strings.set(name, literal);
      }
      const contents = source.replace(/\[(_\w+)\]:/g, (key, name) => (strings.has(name) ? `${strings.get(name)}:` : key));
      return { contents, loader: 'js' };
    });
  },
};

/**
 * Lambda gives every function its role's credentials in environment variables, the first
 * place the SDK's default chain (`@aws-sdk/credential-provider-node`) looks. The rest of that
 * chain (profiles, SSO, web identity, the container and instance endpoints, and the STS, SSO
 * and sign-in clients behind them) never runs in Lambda but is a third of a small handler's
 * bundle. The bundles therefore take their default credentials from the environment only;
 * without them a call fails with the SDK's "Unable to find environment variable credentials".
 */
const lambdaCredentials = {
  name: 'lambda-credentials',
  setup(build) {
    build.onResolve({ filter: /^@aws-sdk\/credential-provider-node$/ }, (args) => ({
      path: 'lambda-credentials', namespace: 'lambda-credentials', pluginData: { resolveDir: args.resolveDir },
    }));
    build.onLoad({ filter: /.*/, namespace: 'lambda-credentials' }, (args) => ({
      contents: "import { fromEnv } from '@aws-sdk/credential-provider-env';\n"
        + 'export const defaultProvider = (init = {}) => fromEnv(init);\n',
      loader: 'js',
      resolveDir: args.pluginData.resolveDir,
    }));
  },
};

/** esbuild options for one handler. `optimize: false` gives the bundles of releases up to 0.1.0 (bench/). */
function buildOptions(root, entry, outfile, optimize) {
  const common = {
    entryPoints: [entry.file],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    // The SDK is bundled (pinned in package.json) rather than taken from the Lambda runtime.
    external: [],
    sourcemap: false,
    logLevel: 'warning',
    absWorkingDir: root,
  };
  if (!optimize) {
    return { ...common, minify: false, legalComments: 'none' };
  }
  return {
    ...common,
    minify: true,
    // The SDK's ES modules (`module`) tree-shake; its CommonJS builds (`main`) do not.
    mainFields: ['module', 'main'],
    // The SDK's ES modules load Node.js built-ins with `import()`; as require() calls they load
    // in any CommonJS host, test runners' module sandboxes included, not only in Node itself.
    supported: { 'dynamic-import': false },
    // Licence texts go to THIRD-PARTY-NOTICES.txt; keep any inline one as well, at the end.
    legalComments: 'eof',
    metafile: true,
    plugins: [sdkSchemaKeys, lambdaCredentials],
  };
}

/**
 * Bundles every handler under <root>/lib into <outDir> (default <root>/assets), replacing
 * what was there. Returns the entries it bundled.
 */
async function bundleAll(root, { outDir = path.join(root, 'assets'), optimize = true } = {}) {
  fs.rmSync(outDir, { recursive: true, force: true });
  const entries = findEntries(path.join(root, 'lib'));
  const apacheText = fs.readFileSync(path.join(__dirname, '..', 'LICENSE'), 'utf8').trim();
  for (const entry of entries) {
    const dir = path.join(outDir, entry.area, entry.name);
    const result = await esbuild.build(buildOptions(root, entry, path.join(dir, 'index.js'), optimize));
    if (optimize) {
      const notices = renderNotices({ bundleName: `${entry.area}/${entry.name}/index.js`, metafile: result.metafile, absWorkingDir: root, apacheText });
      fs.writeFileSync(path.join(dir, NOTICES_FILE), notices);
    }
  }
  return entries;
}

if (require.main === module) {
  const rootFlag = process.argv.indexOf('--root');
  const root = path.resolve(rootFlag >= 0 ? process.argv[rootFlag + 1] : path.join(__dirname, '..'));
  bundleAll(root).then((entries) => {
    console.error(`bundled ${entries.length} handler(s) into ${path.relative(process.cwd(), path.join(root, 'assets')) || 'assets'}`);
  }).catch((err) => {
    console.error(err);
    process.exit(1);
  });
}

module.exports = { bundleAll, findEntries, NOTICES_FILE };
