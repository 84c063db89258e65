import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { handlerCode } from '../../lib/core/handler-code';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { bundleAll } = require('../../scripts/bundle-handlers.js') as {
  bundleAll: (root: string) => Array<{ area: string; name: string }>;
};

/** A throwaway project with one area whose handler imports shared code from a sub-folder. */
function fixtureProject(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'bundle-'));
  const handlerDir = path.join(root, 'lib', 'demo', 'handler');
  fs.mkdirSync(path.join(handlerDir, 'shared'), { recursive: true });
  fs.writeFileSync(path.join(handlerDir, 'shared', 'greeting.ts'), 'export const greet = (who: string): string => `hello ${who}`;\n');
  fs.writeFileSync(path.join(handlerDir, 'echo.ts'), [
    "import { greet } from './shared/greeting';",
    'export async function handler(event: { who: string }) { return { message: greet(event.who) }; }',
  ].join('\n'));
  fs.writeFileSync(path.join(root, 'lib', 'demo', 'construct.ts'), 'export const notAHandler = 1;\n');
  return root;
}

describe('handler bundling', () => {
  test('each file directly in lib/<area>/handler/ becomes a self-contained assets/<area>/<name>/index.js', async () => {
    // GIVEN
    const root = fixtureProject();

    // WHEN
    const entries = bundleAll(root);

    // THEN
    expect(entries.map((e) => `${e.area}/${e.name}`)).toEqual(['demo/echo']);
    const bundle = path.join(root, 'assets', 'demo', 'echo', 'index.js');
    expect(fs.readdirSync(path.join(root, 'assets', 'demo'))).toEqual(['echo']);
    // Self-contained: it runs from a folder with nothing else in it.
    const isolated = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'run-')), 'index.js');
    fs.copyFileSync(bundle, isolated);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require(isolated) as { handler: (e: { who: string }) => Promise<unknown> };
    await expect(mod.handler({ who: 'fleet' })).resolves.toEqual({ message: 'hello fleet' });
  });

  test('two builds give byte-identical bundles, so asset hashes do not move', () => {
    const root = fixtureProject();
    const bundle = path.join(root, 'assets', 'demo', 'echo', 'index.js');
    bundleAll(root);
    const first = fs.readFileSync(bundle);
    bundleAll(root);
    expect(fs.readFileSync(bundle).equals(first)).toBe(true);
  });

  test('a stale bundle of a removed handler does not survive a rebuild', () => {
    const root = fixtureProject();
    bundleAll(root);
    fs.rmSync(path.join(root, 'lib', 'demo', 'handler', 'echo.ts'));
    bundleAll(root);
    expect(fs.existsSync(path.join(root, 'assets', 'demo', 'echo'))).toBe(false);
  });

  test('handlerCode loads a bundle as a Lambda asset', () => {
    const root = fixtureProject();
    bundleAll(root);
    const stack = new Stack(new App(), 'Stack');
    new lambda.Function(stack, 'Fn', {
      runtime: lambda.Runtime.NODEJS_22_X,
      handler: 'index.handler',
      code: handlerCode('demo', 'echo', path.join(root, 'assets')),
    });
    Template.fromStack(stack).hasResourceProperties('AWS::Lambda::Function', { Handler: 'index.handler' });
  });

  test('fails with the command to run when a bundle is missing', () => {
    expect(() => handlerCode('demo', 'nope', path.join(os.tmpdir(), 'no-assets-here')))
      .toThrow(/bundle of handler demo\/nope is missing.*npm run bundle/);
  });
});
