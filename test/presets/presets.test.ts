/*
 * The Trend Micro and CrowdStrike presets: what they render, what they refuse, and that their
 * fleets pass the four cdk-nag packs.
 */
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { ActivationSecret, AgentPackage, CrowdStrikeFalconFleet, PackageFormat, TrendMicroWorkloadSecurityFleet } from '../../lib';
import { build as buildFalconExample } from '../../examples/crowdstrike-falcon';
import { build as buildTrendExample } from '../../examples/trend-micro-workload-security';
import { nagFindings } from '../helpers/nag';

const ENV = { account: '111122223333', region: 'us-east-1' };
const rpm = (serviceName: string) => AgentPackage.fromUrl('https://downloads.example.com/agent.rpm', {
  format: PackageFormat.RPM, architecture: ec2.InstanceArchitecture.X86_64, sha256: 'b'.repeat(64), version: '1.0.0', serviceName,
});

function secret(stack: Stack, id: string): ActivationSecret {
  return ActivationSecret.fromSecret(secretsmanager.Secret.fromSecretCompleteArn(stack, id, `arn:aws:secretsmanager:us-east-1:111122223333:secret:${id}-AbCdEf`));
}

function script(stack: Stack): string {
  const [document] = Object.values(Template.fromStack(stack).findResources('AWS::SSM::Document')) as any[];
  return (document.Properties.Content.mainSteps[0].inputs.runCommand as string[]).join('\n');
}

describe('TrendMicroWorkloadSecurityFleet', () => {
  test('activates with dsa_control -a <url> tenantID:<secret> token:<secret> policyid:<n>, checked with dsa_query', () => {
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    const trend = new TrendMicroWorkloadSecurityFleet(stack, 'Trend', {
      packages: [rpm('ds_agent')], activationUrl: 'dsm://agents.workload.de-1.cloudone.trendmicro.com:443/',
      tenantId: secret(stack, 'tenant'), token: secret(stack, 'token'), policyId: 7, imds: { hopLimit: 1 }, enableBackend: false,
    });
    const text = script(stack);
    expect(text).toContain("ACTIVATION_ARG_0_TEXT='/opt/ds_agent/dsa_control'");
    expect(text).toContain("ACTIVATION_ARG_2_TEXT='dsm://agents.workload.de-1.cloudone.trendmicro.com:443/'");
    expect(text).toContain("ACTIVATION_ARG_3_KIND='value'");
    expect(text).toContain("ACTIVATION_ARG_3_TEXT='tenantID:'");
    expect(text).toContain("ACTIVATION_ARG_4_TEXT='token:'");
    expect(text).toContain("ACTIVATION_ARG_5_TEXT='policyid:7'");
    expect(text).toContain("ACTIVATION_CHECK_LACKS='D0:68:DE:48:1B:DC:4D:00:89:07:7F:85:15:20:C5:90:11:EB:56:6A'");
    expect(trend.fleet.installDocument.activation).toBe(trend.activation);
  });

  test.each([
    ['tenantId', { tenantId: undefined }, /tenantId: got undefined; allowed: the tenant ID: required/],
    ['token as a plain string', { token: '8f1e0c1a-0000-4000-8000-000000000000' }, /token: got "<a string>"; allowed: the activation token as an ActivationSecret .* never the value as a string/],
    ['activationUrl without the trailing slash', { activationUrl: 'dsm://manager.example.com:4120' }, /activationUrl: got "dsm:\/\/manager.example.com:4120"/],
  ])('fails when %s', (_name, override, error) => {
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    expect(() => new TrendMicroWorkloadSecurityFleet(stack, 'Trend', {
      packages: [rpm('ds_agent')], activationUrl: 'dsm://manager.example.com:4120/', tenantId: secret(stack, 'tenant'), token: secret(stack, 'token'),
      imds: { hopLimit: 1 }, ...override as object,
    })).toThrow(error);
  });

  test('the example passes the four cdk-nag packs', () => {
    expect(nagFindings(buildTrendExample(new App()))).toEqual([]);
  });
});

describe('CrowdStrikeFalconFleet', () => {
  test('sets the CID with falconctl -s -f --cid=<secret> [--provisioning-token=<secret>], checked with falconctl -g --cid', () => {
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    new CrowdStrikeFalconFleet(stack, 'Falcon', {
      packages: [rpm('falcon-sensor')], customerId: secret(stack, 'cid'), provisioningToken: secret(stack, 'provtoken'), imds: { hopLimit: 1 }, enableBackend: false,
    });
    const text = script(stack);
    expect(text).toContain("ACTIVATION_ARG_0_TEXT='/opt/CrowdStrike/falconctl'");
    expect(text).toContain("ACTIVATION_ARG_3_TEXT='--cid='");
    expect(text).toContain("ACTIVATION_ARG_4_TEXT='--provisioning-token='");
    expect(text).toContain("ACTIVATION_CHECK_CONTAINS='cid='");
    expect(text).toContain("ACTIVATION_CHECK_LACKS='not set'");
    // The sensor does not stay up without its CID: set before the health-checked start.
    expect(text).toContain("ACTIVATION_BEFORE_START='1'");
  });

  test.each([
    ['the customer id is missing', { customerId: undefined }, /customerId: got undefined; allowed: the customer ID \(CID\): required/],
    ['the customer id is a plain string', { customerId: '0123456789ABCDEF0123456789ABCDEF-12' }, /customerId: got "<a string>"/],
  ])('fails when %s', (_name, override, error) => {
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    expect(() => new CrowdStrikeFalconFleet(stack, 'Falcon', {
      packages: [rpm('falcon-sensor')], customerId: secret(stack, 'cid'), imds: { hopLimit: 1 }, ...override as object,
    })).toThrow(error);
  });

  test('the example passes the four cdk-nag packs', () => {
    expect(nagFindings(buildFalconExample(new App()))).toEqual([]);
  });
});
