/*
 * The README's quick start, run exactly as written (only the package name resolves to this
 * checkout's lib/), so it cannot drift from what the library accepts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as ts from 'typescript';

const README = path.join(__dirname, '..', '..', 'README.md');

/** The first TypeScript block under the README's "Quick start" heading. */
function quickStartSource(readme = fs.readFileSync(README, 'utf8')): string {
  const section = readme.split(/^## Quick start$/m)[1];
  const block = section?.split(/^## /m)[0].match(/^```ts\n([\s\S]*?)^```$/m);
  if (!block) throw new Error('README.md has no ```ts block under "## Quick start"');
  return block[1];
}

/** Runs the code as a CommonJS module whose `cdk-agent-fleet` is this checkout's lib/. */
function run(source: string): { app: App; stack: Stack } {
  const { outputText } = ts.transpileModule(`${source}\nexport { app, stack };\n`, {
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    reportDiagnostics: true,
  });
  const moduleExports: Record<string, unknown> = {};
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const requireFor = (id: string): unknown => (id === 'cdk-agent-fleet' ? require('../../lib') : require(id));
  new Function('require', 'exports', 'module', outputText)(requireFor, moduleExports, { exports: moduleExports });
  return moduleExports as unknown as { app: App; stack: Stack };
}

describe('README quick start', () => {
  test('synthesizes as written, offline, with no context left to look up and no warning', () => {
    // WHEN
    const { app, stack } = run(quickStartSource());
    const assembly = app.synth();

    // THEN nothing is left for the CLI to look up in an AWS account
    expect(assembly.manifest.missing ?? []).toEqual([]);
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::SSM::Document', 1);
    template.hasResourceProperties('AWS::EC2::VPCEndpoint', { VpcId: 'vpc-0123456789abcdef0', VpcEndpointType: 'Gateway' });
    template.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: Match.objectLike({ Statement: [Match.objectLike({ Principal: { Service: 'ec2.amazonaws.com' } })] }),
    });
    expect(Annotations.fromStack(stack).findError('*', Match.anyValue())).toEqual([]);
    expect(Annotations.fromStack(stack).findWarning('*', Match.anyValue())).toEqual([]);
  });
});
