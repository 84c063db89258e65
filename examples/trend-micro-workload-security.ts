/*
 * Example: Trend Micro Workload Security's agent on every instance, activated against the
 * Cloud One manager with the tenant id (a JSON field of a Secrets Manager secret) and the
 * activation token (a SecureString parameter), both read on each instance at run time.
 */
import { App, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { ActivationSecret, AgentPackage, PackageFormat, TrendMicroWorkloadSecurityFleet } from '../lib';

export function build(app: App): Stack {
  const stack = new Stack(app, 'TrendMicroWorkloadSecurity', { env: { account: '222222222222', region: 'us-east-1' } });
  // Downloaded from your manager (https://<manager>/software/agent/...), copied to your own host.
  const packages = [
    AgentPackage.fromUrl('https://packages.example.com/trend/20.0.1-12345/agent.rpm', {
      format: PackageFormat.RPM, architecture: ec2.InstanceArchitecture.X86_64, version: '20.0.1-12345', serviceName: 'ds_agent',
      sha256: '5f2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809',
    }),
    AgentPackage.fromUrl('https://packages.example.com/trend/20.0.1-12345/agent.deb', {
      format: PackageFormat.DEB, architecture: ec2.InstanceArchitecture.X86_64, version: '20.0.1-12345', serviceName: 'ds_agent',
      sha256: '0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9',
    }),
  ];
  new TrendMicroWorkloadSecurityFleet(stack, 'Trend', {
    packages,
    activationUrl: 'dsm://agents.workload.us-1.cloudone.trendmicro.com:443/',
    tenantId: ActivationSecret.fromSecret(secretsmanager.Secret.fromSecretNameV2(stack, 'Tenant', 'trend/workload-security'), { jsonField: 'tenantId' }),
    token: ActivationSecret.fromSecureStringParameter(
      ssm.StringParameter.fromSecureStringParameterAttributes(stack, 'Token', { parameterName: '/trend/activation-token' })),
    policyId: 2,
    imds: { hopLimit: 1 },
  });
  return stack;
}

if (require.main === module) {
  const app = new App();
  build(app);
  app.synth();
}
