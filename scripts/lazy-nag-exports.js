#!/usr/bin/env node
/*
 * Runs after jsii: makes the package root load the cdk-nag pack (and with it cdk-nag, an
 * optional peer dependency) on first use instead of at `require('cdk-agent-fleet')`.
 *
 * The pack must stay in the root for jsii (its languages reach every type through the
 * root), so the compiled root `lib/index.js` re-exports `lib/nag/*` through getters, the way
 * aws-cdk-lib loads its own modules lazily. Apps without cdk-nag import the root; touching
 * `AgentFleetChecks` there explains what to install.
 *
 * The runtime names come from the jsii assembly (classes and enums of lib/nag/), so a new
 * export of that folder is picked up; a root that no longer looks as expected fails the build.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const indexJs = path.join(root, 'lib', 'index.js');
const assembly = JSON.parse(fs.readFileSync(path.join(root, '.jsii'), 'utf8'));

/** Runtime (class and enum) exports per compiled module of lib/nag/, e.g. `./nag/agent-fleet-checks`. */
const lazy = new Map();
for (const type of Object.values(assembly.types)) {
  const file = type.locationInModule?.filename ?? '';
  if (!file.startsWith('lib/nag/') || type.kind === 'interface') continue;
  const module = './' + path.posix.relative('lib', file).replace(/\.ts$/, '');
  lazy.set(module, [...(lazy.get(module) ?? []), type.name]);
}
if (lazy.size === 0) throw new Error('lazy-nag-exports: the jsii assembly has no class or enum under lib/nag/');

let source = fs.readFileSync(indexJs, 'utf8');
for (const [module, names] of lazy) {
  const eager = `__exportStar(require("${module}"), exports);`;
  if (!source.includes(eager)) {
    throw new Error(`lazy-nag-exports: ${path.relative(root, indexJs)} does not re-export ${module} as expected (${eager})`);
  }
  const getters = names.map((name) => `Object.defineProperty(exports, "${name}", { enumerable: true, configurable: true, get: function () { return loadNag("${module}").${name}; } });`);
  source = source.replace(eager, getters.join('\n'));
}

const loader = `
/* cdk-nag is an optional peer dependency: lib/nag/ (and cdk-nag) load on first use. See scripts/lazy-nag-exports.js. */
function loadNag(module) {
    try {
        return require(module);
    } catch (e) {
        if (e && e.code === "MODULE_NOT_FOUND" && /'cdk-nag'/.test(String(e.message))) {
            throw new Error("AgentFleetChecks is a cdk-nag pack: install cdk-nag 2 or 3 in this app (npm install --save-dev cdk-nag@^3).", { cause: e });
        }
        throw e;
    }
}
`;
source = source.replace('Object.defineProperty(exports, "__esModule", { value: true });',
  (marker) => marker + loader);
if (!source.includes('function loadNag(')) throw new Error('lazy-nag-exports: no __esModule marker in lib/index.js');

fs.writeFileSync(indexJs, source);
console.log(`lazy-nag-exports: ${[...lazy.values()].flat().join(', ')} load on first use`);
