#!/usr/bin/env node
/*
 * Bundles every Lambda handler of the library with esbuild, at build time, into
 * assets/<area>/<name>/index.js, which ships with the package. Users' synth then needs
 * neither esbuild nor Docker nor the network, and asset hashes do not depend on their machine.
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

function bundleAll(root) {
  const assetsDir = path.join(root, 'assets');
  fs.rmSync(assetsDir, { recursive: true, force: true });
  const entries = findEntries(path.join(root, 'lib'));
  for (const entry of entries) {
    esbuild.buildSync({
      entryPoints: [entry.file],
      outfile: path.join(assetsDir, entry.area, entry.name, 'index.js'),
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      // The SDK is bundled (pinned in package.json) rather than taken from the Lambda runtime.
      external: [],
      minify: false,
      sourcemap: false,
      legalComments: 'none',
      logLevel: 'warning',
      absWorkingDir: root,
    });
  }
  return entries;
}

if (require.main === module) {
  const rootFlag = process.argv.indexOf('--root');
  const root = path.resolve(rootFlag >= 0 ? process.argv[rootFlag + 1] : path.join(__dirname, '..'));
  const entries = bundleAll(root);
  console.error(`bundled ${entries.length} handler(s) into ${path.relative(process.cwd(), path.join(root, 'assets')) || 'assets'}`);
}

module.exports = { bundleAll, findEntries };
