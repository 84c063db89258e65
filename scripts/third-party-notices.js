/*
 * The third-party notices of one handler bundle, from esbuild's metafile: every npm package
 * whose code the bundle includes, with its version, its licence and the licence's text.
 * Minification drops the packages' licence comments, so this file is where their notices live.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const LICENCE_FILE = /^(licen[cs]e|copying)(\.(md|txt))?$/i;
const NOTICE_FILE = /^notice(\.(md|txt))?$/i;

/** The package folders (…/node_modules/<name> or …/node_modules/@scope/<name>) behind metafile inputs. */
function packageDirs(metafile, absWorkingDir) {
  const dirs = new Set();
  for (const input of Object.keys(metafile.inputs)) {
    const at = input.lastIndexOf('node_modules/');
    if (at < 0) continue;
    const rest = input.slice(at + 'node_modules/'.length).split('/');
    const name = rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
    dirs.add(path.resolve(absWorkingDir, input.slice(0, at), 'node_modules', name));
  }
  return [...dirs];
}

function readFirst(dir, pattern) {
  const file = fs.readdirSync(dir).filter((f) => pattern.test(f)).sort()[0];
  return file ? fs.readFileSync(path.join(dir, file), 'utf8').replace(/\r\n/g, '\n').trim() : undefined;
}

/**
 * One package's notice. A package that declares Apache-2.0 but ships no licence file gets the
 * standard Apache-2.0 text (the LICENSE at the root of this project); any other package without
 * a licence file stops the build, because its terms would otherwise go unrecorded.
 */
function describePackage(dir, apacheText) {
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const licence = typeof pkg.license === 'string' ? pkg.license : pkg.license?.type;
  let text = readFirst(dir, LICENCE_FILE);
  if (!text) {
    if (licence !== 'Apache-2.0') {
      throw new Error(`${pkg.name}@${pkg.version} (${dir}) ships no licence file and declares '${licence}': `
        + 'record its licence text before bundling it');
    }
    text = apacheText;
  }
  return { name: pkg.name, version: pkg.version, licence, text, notice: readFirst(dir, NOTICE_FILE) };
}

const END_OF_TERMS = 'END OF TERMS AND CONDITIONS';
const collapse = (text) => text.replace(/\s+/g, ' ').trim();

/**
 * Splits an Apache-2.0 licence file into the standard terms (then printed once per notices
 * file) and what the package adds after them: its copyright lines. Returns undefined when the
 * file's terms are not word for word the standard ones, so that file is printed whole.
 */
function apacheCopyright(text, standardTerms) {
  const end = text.indexOf(END_OF_TERMS);
  if (end < 0 || collapse(text.slice(0, end)) !== standardTerms) return undefined;
  return text.slice(end).split('\n').map((l) => l.trim())
    .filter((l) => /^copyright\b/i.test(l) && !/\[yyyy\]|\{yyyy\}/.test(l));
}

/**
 * The notices text of a bundle. The Apache-2.0 terms, which most of the AWS SDK carries, appear
 * once, followed by each such package's copyright lines; any other licence text appears once
 * per distinct text, headed by the packages it covers.
 */
function renderNotices({ bundleName, metafile, absWorkingDir, apacheText }) {
  const packages = packageDirs(metafile, absWorkingDir)
    .map((dir) => describePackage(dir, apacheText))
    .sort((a, b) => a.name.localeCompare(b.name) || a.version.localeCompare(b.version));
  const standardTerms = collapse(apacheText.slice(0, apacheText.indexOf(END_OF_TERMS)));
  const apache = [];
  const byText = new Map();
  for (const p of packages) {
    const copyright = p.licence === 'Apache-2.0' ? apacheCopyright(p.text, standardTerms) : undefined;
    if (copyright) {
      apache.push({ ...p, copyright });
    } else {
      byText.set(p.text, [...(byText.get(p.text) ?? []), p]);
    }
  }
  const id = (p) => `${p.name}@${p.version}`;
  const rule = '-'.repeat(78);
  const lines = [
    `Third-party software included in ${bundleName}`,
    '',
    'The handler code itself is part of cdk-agent-fleet (Apache-2.0, see the package\'s LICENSE).',
    `The bundle also includes these ${packages.length} npm packages:`,
    '',
    ...packages.map((p) => `  ${id(p)} (${p.licence})`),
  ];
  if (apache.length > 0) {
    lines.push('', rule, `${apache.map(id).join(', ')} are licensed under the Apache License, Version 2.0,`,
      'whose text follows their copyright notices.', rule, '');
    for (const p of apache) {
      lines.push(`${id(p)}: ${p.copyright.length > 0 ? p.copyright.join(' / ') : '(no copyright line in its licence file)'}`);
    }
    lines.push('', apacheText.slice(0, apacheText.indexOf(END_OF_TERMS) + END_OF_TERMS.length));
  }
  for (const [text, group] of byText) {
    lines.push('', rule, `Licence of ${group.map(id).join(', ')}:`, rule, '', text);
  }
  for (const p of packages.filter((q) => q.notice)) {
    lines.push('', rule, `NOTICE of ${id(p)}:`, rule, '', p.notice);
  }
  return `${lines.join('\n')}\n`;
}

module.exports = { renderNotices, packageDirs };
