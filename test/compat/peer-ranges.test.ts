import * as fs from 'node:fs';
import * as path from 'node:path';
import { toMavenVersionRange, toNuGetVersionRange, toPythonVersionRange } from 'jsii-pacmak/lib/targets/version-utils';

/*
 * The peer ranges are what every jsii language's package requires, so they must be ranges
 * each of those languages can state. `scripts/compat-check.sh` installs their floors.
 */
const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as {
  peerDependencies: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
};

describe('peerDependencies', () => {
  test.each(Object.entries(pkg.peerDependencies))('%s %s is one interval, as Python and NuGet need', (_name, range) => {
    // `a || b` becomes `>=2.36.0, <3.0.0, >=3.0.2, <4.0.0` for pip, which nothing satisfies.
    expect(range).not.toContain('||');
    expect(toPythonVersionRange(range).split(', ').length).toBeLessThanOrEqual(2);
    expect(toMavenVersionRange(range)).not.toContain('),');
    expect(toNuGetVersionRange(range)).not.toContain('),');
  });

  test('start at the floors the README names and the compatibility run installs', () => {
    const lowest = (range: string) => range.trim().split(/\s+/)[0].replace(/^[\^~>=]+/, '');
    expect(Object.fromEntries(Object.entries(pkg.peerDependencies).map(([name, range]) => [name, lowest(range)])))
      .toEqual({ 'aws-cdk-lib': '2.200.0', 'constructs': '10.0.5', 'cdk-nag': '2.36.0' });
    expect(toPythonVersionRange(pkg.peerDependencies['cdk-nag'])).toBe('>=2.36.0, <4.0.0');
  });

  test('cdk-nag is optional', () => {
    expect(pkg.peerDependenciesMeta?.['cdk-nag']?.optional).toBe(true);
  });
});
