/*
 * Example: the CrowdStrike Falcon sensor on every instance, its customer ID read on each
 * instance from a Secrets Manager secret encrypted with your own key.
 */
import { App, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { ActivationSecret, AgentPackage, CrowdStrikeFalconFleet, PackageFormat } from '../lib';

export function build(app: App): Stack {
  const stack = new Stack(app, 'CrowdStrikeFalcon', { env: { account: '222222222222', region: 'us-east-1' } });
  const key = kms.Key.fromKeyArn(stack, 'SecretsKey', 'arn:aws:kms:us-east-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab');
  const cid = secretsmanager.Secret.fromSecretAttributes(stack, 'Cid', {
    secretCompleteArn: 'arn:aws:secretsmanager:us-east-1:222222222222:secret:crowdstrike/cid-AbCdEf', encryptionKey: key,
  });
  new CrowdStrikeFalconFleet(stack, 'Falcon', {
    packages: [
      AgentPackage.fromUrl('https://packages.example.com/falcon/falcon-sensor-7.18.0-17106.amzn2023.x86_64.rpm', {
        format: PackageFormat.RPM, architecture: ec2.InstanceArchitecture.X86_64, version: '7.18.0-17106', serviceName: 'falcon-sensor',
        sha256: '9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0',
      }),
    ],
    customerId: ActivationSecret.fromSecret(cid),
    imds: { hopLimit: 1 },
  });
  return stack;
}

if (require.main === module) {
  const app = new App();
  build(app);
  app.synth();
}
