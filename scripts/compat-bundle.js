#!/usr/bin/env node
/*
 * Compiles the compatibility run's app (test/compat/floor-app.ts) and every example into an
 * app directory, as JavaScript that imports the INSTALLED cdk-agent-fleet: `../lib` (and
 * `../../lib`) become `cdk-agent-fleet`, and aws-cdk-lib, constructs and cdk-nag stay
 * external, so they resolve to the app's own versions. Each file is its own entry point, so
 * an example's `require.main === module` block does not run when the app loads it.
 *
 * Usage: node scripts/compat-bundle.js <app dir>
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const esbuild = require('esbuild');

const root = path.join(__dirname, '..');
const outdir = process.argv[2];
if (!outdir) throw new Error('usage: node scripts/compat-bundle.js <app dir>');

const examples = fs.readdirSync(path.join(root, 'examples')).filter((f) => f.endsWith('.ts')).map((f) => path.join('examples', f));
const installedLibrary = {
  name: 'installed-library',
  setup(build) {
    build.onResolve({ filter: /^(\.\.\/)+lib$/ }, () => ({ path: 'cdk-agent-fleet', external: true }));
  },
};

esbuild.build({
  absWorkingDir: root,
  entryPoints: [...examples, path.join('test', 'compat', 'floor-app.ts')],
  outbase: root,
  outdir,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  external: ['aws-cdk-lib', 'aws-cdk-lib/*', 'constructs', 'cdk-nag', 'cdk-nag/*'],
  plugins: [installedLibrary],
  logLevel: 'warning',
}).catch(() => process.exit(1));
