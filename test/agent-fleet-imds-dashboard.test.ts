import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as sns from 'aws-cdk-lib/aws-sns';
import { AgentFleet, AgentPackage, ImdsEnforcementMode, PackageFormat } from '../lib';

const ENV = { account: '111122223333', region: 'eu-west-1' };

function fleet(props: { imds?: any; enableBackend?: boolean; backend?: any } = {}) {
  const stack = new Stack(new App(), 'Stack', { env: ENV });
  const packages = [AgentPackage.fromUrl('https://downloads.example.com/security-agent-1.2.3.x86_64.rpm', {
    version: '1.2.3', serviceName: 'security-agent', format: PackageFormat.RPM, architecture: ec2.InstanceArchitecture.X86_64, sha256: 'a'.repeat(64),
  })];
  const f = new AgentFleet(stack, 'Fleet', { agentName: 'security-agent', packages, imds: { hopLimit: 2 }, ...props } as never);
  return { stack, fleet: f, template: Template.fromStack(stack) };
}

const dashboardBody = (template: Template) => JSON.stringify(Object.values(template.findResources('AWS::CloudWatch::Dashboard'))[0].Properties.DashboardBody);

describe('AgentFleet: IMDS enforcement on the backend dashboard', () => {
  test('the backend dashboard shows the enforcement\'s failed and at-risk counts and its alarm', () => {
    const { template } = fleet();
    const body = dashboardBody(template);
    expect(body).toContain('IMDS enforcement: failed and at-risk instances');
    expect(body).toContain('AgentFleet/ImdsEnforcement');
    expect(body).toContain('\\"AtRisk\\"');
    expect(body).toContain('IMDSv1 calls refused since enforcing');
  });

  test('the enforcement alarms through the backend\'s topic when one is given', () => {
    const app = new App();
    const topicStack = new Stack(app, 'Topics', { env: ENV });
    const topic = new sns.Topic(topicStack, 'Alarms');
    const stack = new Stack(app, 'Stack', { env: ENV });
    const packages = [AgentPackage.fromUrl('https://downloads.example.com/security-agent-1.2.3.x86_64.rpm', {
      version: '1.2.3', serviceName: 'security-agent', format: PackageFormat.RPM, architecture: ec2.InstanceArchitecture.X86_64, sha256: 'a'.repeat(64),
    })];
    const f = new AgentFleet(stack, 'Fleet', { agentName: 'security-agent', packages, imds: { hopLimit: 2 }, backend: { alarmTopic: topic } });
    expect(f.imdsEnforcement!.alarmTopic).toBe(topic);
    Template.fromStack(stack).resourceCountIs('AWS::SNS::Topic', 0);
  });

  test('without a backend, or in AUDIT, nothing breaks: the widgets are only where both exist', () => {
    const none = fleet({ enableBackend: false });
    none.template.resourceCountIs('AWS::CloudWatch::Dashboard', 0);
    const audit = fleet({ imds: { hopLimit: 2, mode: ImdsEnforcementMode.AUDIT } });
    const body = dashboardBody(audit.template);
    expect(body).toContain('IMDS enforcement: failed and at-risk instances');
    expect(body).not.toContain('IMDSv1 calls refused since enforcing');
  });
});
