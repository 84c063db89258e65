import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App, LegacyStackSynthesizer, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { format } from 'pretty-format';
import * as testingModule from '../../lib/testing';
import { normaliseAssetReferences, templateSnapshotSerializer } from '../../lib/testing';

/** A handler bundle as one build of the library would produce it. */
function bundle(content: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bundle-'));
  fs.writeFileSync(path.join(dir, 'index.js'), content);
  return dir;
}

function template(codeDir: string, opts: { memorySize?: number; legacy?: boolean } = {}): unknown {
  // The legacy synthesizer declares an ArtifactHash parameter per asset that its templates never
  // reference, which CloudFormation validation reports on every synth. That is the synthesizer's
  // design, and these tests are about the serializer, so the legacy app skips that validation.
  const app = new App(opts.legacy ? { builtinCloudFormationValidation: false } : {});
  const stack = new Stack(app, 'Stack', {
    env: { account: '111122223333', region: 'eu-west-1' },
    synthesizer: opts.legacy ? new LegacyStackSynthesizer() : undefined,
  });
  const fn = new lambda.Function(stack, 'Handler', {
    runtime: lambda.Runtime.NODEJS_22_X,
    handler: 'index.handler',
    code: lambda.Code.fromAsset(codeDir),
    memorySize: opts.memorySize ?? 256,
  });
  new lambda.Alias(stack, 'Live', { aliasName: 'live', version: fn.currentVersion });
  return Template.fromStack(stack).toJSON();
}

const snapshot = (value: unknown) => format(value, { plugins: [templateSnapshotSerializer] });

// Two builds of the same library source: the bundles differ (another esbuild, another banner).
const buildA = bundle('exports.handler = async () => ({ ok: true }); // build A\n');
const buildB = bundle('exports.handler = async () => ({ ok: true }); // build B\n');

describe('templateSnapshotSerializer', () => {
  test('two builds of the same stack give identical snapshots', () => {
    // GIVEN two templates that differ only in their asset hashes
    const a = template(buildA);
    const b = template(buildB);
    expect(format(a)).not.toEqual(format(b)); // without the serializer they differ

    // THEN with it the snapshots are the same
    expect(snapshot(a)).toEqual(snapshot(b));
    expect(snapshot(a)).toContain('<asset hash>.zip');
    expect(snapshot(a)).toContain('"<asset bucket>"');
    expect(snapshot(a)).toMatch(/HandlerCurrentVersion[0-9A-F]{8}<hash>/);
    expect(snapshot(a)).not.toMatch(/[0-9a-f]{64}/);
  });

  test('the same holds for the legacy synthesizer, whose asset parameters carry hashes in their names', () => {
    const a = template(buildA, { legacy: true });
    const b = template(buildB, { legacy: true });
    expect(format(a)).not.toEqual(format(b));
    expect(snapshot(a)).toEqual(snapshot(b));
    expect(snapshot(a)).toContain('AssetParameters<asset hash>S3Bucket');
  });

  test('a real template change still changes the snapshot', () => {
    expect(snapshot(template(buildA, { memorySize: 512 }))).not.toEqual(snapshot(template(buildA)));
  });

  test('a checksum that is template content (a package SHA-256) is not mistaken for an asset hash', () => {
    const sha = 'ab'.repeat(32);
    const line = `PKG_RPM_X86_64_SHA256='${sha}'`;
    expect(templateSnapshotSerializer.test(line)).toBe(false);
    expect(normaliseAssetReferences(`${sha}.zip ${line}`)).toBe(`<asset hash>.zip ${line}`);
    expect(normaliseAssetReferences(`asset.${sha}`)).toBe('asset.<asset hash>');
    expect(normaliseAssetReferences(`S3 key for asset version \\"${sha}\\"`)).toBe('S3 key for asset version \\"<asset hash>\\"');
  });

  test('leaves strings without asset references alone', () => {
    expect(templateSnapshotSerializer.test('arn:aws:s3:::my-bucket')).toBe(false);
    expect(templateSnapshotSerializer.test({ Bucket: 'x' })).toBe(false);
    expect(templateSnapshotSerializer.test(42)).toBe(false);
    expect(templateSnapshotSerializer.test('a'.repeat(64))).toBe(false);
    expect(normaliseAssetReferences('cdk-hnb659fds-assets-111122223333-eu-west-1')).toBe('<asset bucket>');
  });

  test('the module itself can be listed in jest\'s snapshotSerializers', () => {
    expect(typeof testingModule.test).toBe('function');
    expect(typeof testingModule.serialize).toBe('function');
    expect(testingModule.test(`${'a'.repeat(64)}.zip`)).toBe(true);
  });

  test('works as a registered snapshot serializer', () => {
    expect.addSnapshotSerializer(templateSnapshotSerializer);
    expect({ S3Key: `${'0'.repeat(64)}.zip` }).toMatchInlineSnapshot(`
{
  "S3Key": "<asset hash>.zip",
}
`);
  });
});
