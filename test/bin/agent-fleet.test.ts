import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createApp } from '../../bin/agent-fleet';

describe('the CDK app in bin/', () => {
  test('synthesizes the fleet stack offline, with every cdk-nag pack passing', () => {
    // GIVEN
    const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdk-out-'));

    // WHEN (the validation plugins throw on any unacknowledged finding)
    const assembly = createApp({ outdir }).synth();

    // THEN
    const stack = assembly.getStackByName('AgentFleet');
    const types = Object.values(stack.template.Resources as Record<string, { Type: string }>).map((r) => r.Type);
    expect(types).toEqual(expect.arrayContaining([
      'AWS::S3::Bucket', 'AWS::KMS::Key', 'AWS::S3::BucketPolicy', 'AWS::ApiGateway::RestApi', 'AWS::DynamoDB::Table',
      'AWS::SSM::Document', 'AWS::SSM::Association', 'Custom::Imdsv2Enforcement', 'AWS::CloudWatch::Dashboard',
    ]));
    const report = JSON.parse(fs.readFileSync(path.join(outdir, 'validation-report.json'), 'utf8'));
    expect(report.pluginReports.filter((r: { conclusion?: string }) => r.conclusion === 'failure')).toEqual([]);
  });
});
