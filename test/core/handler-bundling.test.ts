import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { handlerCode } from '../../lib/core/handler-code';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { bundleAll, NOTICES_FILE } = require('../../scripts/bundle-handlers.js') as {
  bundleAll: (root: string, options?: { outDir?: string; optimize?: boolean }) => Promise<Array<{ area: string; name: string }>>;
  NOTICES_FILE: string;
};
const execFileAsync = promisify(execFile);
const REPO = path.join(__dirname, '..', '..');

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
    const entries = await bundleAll(root);

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

  test('two builds give byte-identical bundles and notices, so asset hashes do not move', async () => {
    const root = fixtureProject();
    const dir = path.join(root, 'assets', 'demo', 'echo');
    await bundleAll(root);
    const first = [fs.readFileSync(path.join(dir, 'index.js')), fs.readFileSync(path.join(dir, NOTICES_FILE))];
    await bundleAll(root);
    expect(fs.readFileSync(path.join(dir, 'index.js')).equals(first[0])).toBe(true);
    expect(fs.readFileSync(path.join(dir, NOTICES_FILE)).equals(first[1])).toBe(true);
  });

  test('a stale bundle of a removed handler does not survive a rebuild', async () => {
    const root = fixtureProject();
    await bundleAll(root);
    fs.rmSync(path.join(root, 'lib', 'demo', 'handler', 'echo.ts'));
    await bundleAll(root);
    expect(fs.existsSync(path.join(root, 'assets', 'demo', 'echo'))).toBe(false);
  });

  test('handlerCode loads a bundle as a Lambda asset', async () => {
    const root = fixtureProject();
    await bundleAll(root);
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

/** Adds a package to the fixture's node_modules and a handler that imports it. */
function withPackage(root: string, name: string, pkg: Record<string, unknown>, licence?: string): void {
  const dir = path.join(root, 'node_modules', name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name, version: '1.2.3', main: 'index.js', ...pkg }));
  fs.writeFileSync(path.join(dir, 'index.js'), `exports.id = ${JSON.stringify(name)};\n`);
  if (licence) fs.writeFileSync(path.join(dir, 'LICENSE'), licence);
}

describe('third-party notices', () => {
  test('list every bundled package with its version, licence and licence text', async () => {
    // GIVEN a handler that bundles an MIT package and an Apache-2.0 package without a licence file
    const root = fixtureProject();
    withPackage(root, 'tiny-mit', { license: 'MIT' }, 'MIT License\n\nCopyright (c) 2020 Tiny Authors\n\nPermission is hereby granted...');
    withPackage(root, '@scope/plain-apache', { license: 'Apache-2.0' });
    fs.writeFileSync(path.join(root, 'lib', 'demo', 'handler', 'uses.ts'), [
      "import { id as a } from 'tiny-mit';",
      "import { id as b } from '@scope/plain-apache';",
      'export async function handler() { return [a, b]; }',
    ].join('\n'));

    // WHEN
    await bundleAll(root);

    // THEN
    const notices = fs.readFileSync(path.join(root, 'assets', 'demo', 'uses', NOTICES_FILE), 'utf8');
    expect(notices).toContain('Third-party software included in demo/uses/index.js');
    expect(notices).toContain('  @scope/plain-apache@1.2.3 (Apache-2.0)\n  tiny-mit@1.2.3 (MIT)\n');
    expect(notices).toContain('Copyright (c) 2020 Tiny Authors');
    // The Apache-2.0 package without a licence file gets the standard text.
    expect(notices).toContain('TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION');
    // A bundle without third-party code says so.
    expect(fs.readFileSync(path.join(root, 'assets', 'demo', 'echo', NOTICES_FILE), 'utf8')).toContain('these 0 npm packages');
  });

  test('fails when a bundled package has no licence file and is not Apache-2.0', async () => {
    const root = fixtureProject();
    withPackage(root, 'mystery', { license: 'BSD-3-Clause' });
    fs.writeFileSync(path.join(root, 'lib', 'demo', 'handler', 'uses.ts'), "import { id } from 'mystery';\nexport const handler = async () => id;\n");
    await expect(bundleAll(root)).rejects.toThrow(/mystery@1\.2\.3 .* ships no licence file and declares 'BSD-3-Clause'/);
  });
});

describe('AWS SDK clients in a bundle', () => {
  /** A fixture project that bundles EC2's DescribeInstances from the repository's pinned SDK. */
  function sdkProject(): string {
    const root = fixtureProject();
    fs.symlinkSync(path.join(REPO, 'node_modules'), path.join(root, 'node_modules'), 'dir');
    fs.writeFileSync(path.join(root, 'lib', 'demo', 'handler', 'describe.ts'), [
      "import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';",
      'export async function handler(event: { endpoint: string }) {',
      "  const client = new EC2Client({ endpoint: event.endpoint, region: 'us-east-1', maxAttempts: 1 });",
      "  return client.send(new DescribeInstancesCommand({ InstanceIds: ['i-0123456789abcdef0'] }));",
      '}',
    ].join('\n'));
    return root;
  }

  const LAMBDA_CREDENTIALS = { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'not-a-secret', AWS_SESSION_TOKEN: 'token' };

  /** Runs the bundle's handler in a fresh node process, as Lambda does, and returns its output. */
  async function runBundle(bundle: string, endpoint: string, credentials: Record<string, string>): Promise<string> {
    const isolated = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'run-')), 'index.js');
    fs.copyFileSync(bundle, isolated);
    const env: Record<string, string> = { PATH: process.env.PATH ?? '', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...credentials };
    const script = `require(${JSON.stringify(isolated)}).handler({ endpoint: ${JSON.stringify(endpoint)} })`
      + '.then((o) => console.log(JSON.stringify(o)), (e) => { console.log(e.message); process.exitCode = 1; })';
    try {
      return (await execFileAsync(process.execPath, ['-e', script], { env, cwd: path.dirname(isolated) })).stdout;
    } catch (err) {
      return (err as { stdout: string }).stdout;
    }
  }

  const RESPONSE = `<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>r-1</requestId>
  <reservationSet><item><reservationId>r-0a</reservationId><instancesSet><item>
    <instanceId>i-0123456789abcdef0</instanceId>
    <metadataOptions><httpTokens>optional</httpTokens></metadataOptions>
    <tagSet><item><key>Team</key><value>blue</value></item></tagSet>
  </item></instancesSet></item></reservationSet>
</DescribeInstancesResponse>`;

  test('keep only the shapes of the calls the handler makes, and still speaks the protocol', async () => {
    // GIVEN an endpoint that answers DescribeInstances, and the handler bundled from the SDK
    const root = sdkProject();
    const requests: string[] = [];
    const authorizations: string[] = [];
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (chunk) => { body += chunk; });
      req.on('end', () => {
        requests.push(body);
        authorizations.push(String(req.headers.authorization));
        res.writeHead(200, { 'content-type': 'text/xml' }).end(RESPONSE);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      await bundleAll(root);
      const bundle = path.join(root, 'assets', 'demo', 'describe', 'index.js');

      // WHEN the bundle runs on its own, in a fresh node process with credentials in the
      // environment, as in Lambda
      const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const out = JSON.parse(await runBundle(bundle, endpoint, LAMBDA_CREDENTIALS));

      // THEN the request is signed with the environment's credentials, the query serialized and the XML (list and tag names included) parsed
      expect(requests).toEqual([expect.stringContaining('Action=DescribeInstances')]);
      expect(requests[0]).toContain('InstanceId.1=i-0123456789abcdef0');
      expect(authorizations[0]).toMatch(/^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/us-east-1\/ec2\/aws4_request/);
      expect(out.Reservations[0].Instances[0]).toMatchObject({
        InstanceId: 'i-0123456789abcdef0',
        MetadataOptions: { HttpTokens: 'optional' },
        Tags: [{ Key: 'Team', Value: 'blue' }],
      });
      // and the EC2 shapes of calls it never makes are gone
      const code = fs.readFileSync(bundle, 'utf8');
      expect(code.includes('AllocateAddressRequest')).toBe(false);
      expect(code.length).toBeLessThan(600_000);
      expect(fs.readFileSync(path.join(root, 'assets', 'demo', 'describe', NOTICES_FILE), 'utf8'))
        .toMatch(/@aws-sdk\/client-ec2@\d+\.\d+\.\d+ \(Apache-2\.0\)/);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  test('take default credentials from the environment only, as Lambda provides them', async () => {
    // GIVEN a bundled handler, and an environment without credentials but with a profile file
    // that the SDK's full default chain would read
    const root = sdkProject();
    await bundleAll(root);
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'home-'));
    fs.mkdirSync(path.join(home, '.aws'));
    fs.writeFileSync(path.join(home, '.aws', 'credentials'), '[default]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = x\n');

    // WHEN it runs
    const out = await runBundle(path.join(root, 'assets', 'demo', 'describe', 'index.js'), 'http://127.0.0.1:9', { HOME: home });

    // THEN it fails on the missing environment credentials instead of using another source
    expect(out).toContain('Unable to find environment variable credentials');
    expect(fs.readFileSync(path.join(root, 'assets', 'demo', 'describe', NOTICES_FILE), 'utf8')).not.toContain('@aws-sdk/credential-provider-node');
  });
});

describe('the shipped handler assets', () => {
  const assets = path.join(REPO, 'assets');
  const files = (dir: string): string[] => fs.readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? files(path.join(dir, e.name)) : [path.join(dir, e.name)]));

  test('stay within 3 MB together, each bundle with its notices beside it', () => {
    // `npm test` bundles first; a bare `jest` run after `npm run bundle` sees the same files.
    const all = files(assets);
    const bundles = all.filter((f) => path.basename(f) === 'index.js');
    expect(bundles.length).toBeGreaterThan(0);
    for (const bundle of bundles) {
      expect(fs.existsSync(path.join(path.dirname(bundle), NOTICES_FILE))).toBe(true);
    }
    const bytes = all.reduce((sum, f) => sum + fs.statSync(f).size, 0);
    expect(bytes).toBeLessThanOrEqual(3 * 1024 * 1024);
  });
});
