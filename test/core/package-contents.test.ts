import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

const REPO = path.join(__dirname, '..', '..');

/** The files `npm pack` would put in the tarball (scripts skipped: no bundling or compiling). */
function packedFiles(): string[] {
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: REPO, stdio: ['ignore', 'pipe', 'ignore'] });
  return (JSON.parse(out.toString()) as Array<{ files: Array<{ path: string }> }>)[0].files.map((f) => f.path);
}

describe('the npm package', () => {
  const files = packedFiles();

  test('ships the licence it declares', () => {
    expect(files).toContain('LICENSE');
    expect(fs.readFileSync(path.join(REPO, 'LICENSE'), 'utf8')).toContain('Apache License\n                           Version 2.0, January 2004');
  });

  test('ships every file the README links or shows, so the README renders on the registry', () => {
    const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');
    const targets = [...readme.matchAll(/\]\((?!https?:|#|mailto:)([^)#\s]+)/g)].map((m) => path.normalize(m[1]));
    expect(targets).toEqual(expect.arrayContaining(['docs/architecture.png']));
    expect(targets.filter((t) => !files.includes(t))).toEqual([]);
  });

  test('ships no library TypeScript sources and emits no source maps pointing at them', () => {
    // (examples/ ships as TypeScript: the README links it as reading material.)
    expect(files.filter((f) => f.startsWith('lib/') && f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
    // The compiler options jsii builds lib/ with.
    const options = JSON.parse(fs.readFileSync(path.join(REPO, 'tsconfig.json'), 'utf8')).compilerOptions;
    expect([options.sourceMap, options.inlineSourceMap, options.declarationMap]).toEqual([undefined, undefined, undefined]);
  });
});
