import { ArnFormat, CustomResource, Duration, Names, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { limitGrantsToAwsResources } from '../core/control-tower';
import { createHandlerFunction, LAMBDA_NAG_PACKS, lambdaRuleAcks } from '../core/handler-function';
import { acknowledgeNagFindings, cfnResourceOf, nagFindingValue } from '../core/nag';

const SETTING_NAME = 'ssm/managed-instance/default-ec2-instance-management-role';

/**
 * Turns on SSM Default Host Management Configuration: instances without an instance
 * profile become SSM-managed through a role SSM assumes for them. The previous setting is
 * restored when this leaves the stack.
 *
 * Internal to AgentAutoConfiguration (`enableDefaultHostManagement`).
 */
export class DefaultHostManagement extends Construct {
  /** The role SSM gives instances that have no instance profile. */
  public readonly role: iam.Role;

  constructor(scope: Construct, id: string, network: { vpc?: ec2.IVpc; vpcSubnets?: ec2.SubnetSelection } = {}) {
    super(scope, id);
    const stack = Stack.of(this);

    this.role = new iam.Role(this, 'InstanceManagementRole', {
      description: 'Default Host Management Configuration: lets SSM manage EC2 instances that have no instance profile (cdk-agent-fleet)',
      assumedBy: new iam.ServicePrincipal('ssm.amazonaws.com'),
      managedPolicies: [iam.ManagedPolicy.fromAwsManagedPolicyName('AmazonSSMManagedEC2InstanceDefaultPolicy')],
    });
    acknowledgeNagFindings(cfnResourceOf(this.role), {
      rule: 'AwsSolutions-IAM4',
      finding: 'Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedEC2InstanceDefaultPolicy',
      reason: 'Default Host Management Configuration is designed around this AWS-maintained policy, which AWS updates as SSM Agent needs change; it grants the agent core channel permissions and nothing on customer data.',
    });

    // The log group's name is fixed up front so the key policy can name it without a cycle.
    const logGroupName = `/cdk-agent-fleet/${Names.uniqueResourceName(this, { maxLength: 200, separator: '-' })}`;
    const logGroupArn = stack.formatArn({ service: 'logs', resource: 'log-group', resourceName: logGroupName, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
    const key = new kms.Key(this, 'LogsKey', {
      description: `Encrypts the logs of ${this.node.path}`,
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    limitGrantsToAwsResources(key);
    key.addToResourcePolicy(new iam.PolicyStatement({
      principals: [new iam.ServicePrincipal(`logs.${stack.region}.amazonaws.com`)],
      actions: ['kms:Encrypt*', 'kms:Decrypt*', 'kms:ReEncrypt*', 'kms:GenerateDataKey*', 'kms:Describe*'],
      resources: ['*'],
      conditions: { ArnEquals: { 'kms:EncryptionContext:aws:logs:arn': logGroupArn } },
    }));
    const logGroup = new logs.LogGroup(this, 'Logs', {
      logGroupName,
      encryptionKey: key,
      retention: logs.RetentionDays.ONE_YEAR,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    const settingArn = stack.formatArn({ service: 'ssm', resource: 'servicesetting', resourceName: SETTING_NAME });
    const handlerPolicy = new iam.ManagedPolicy(this, 'HandlerPolicy', {
      description: 'Reads and changes the Default Host Management Configuration role setting only',
      statements: [
        new iam.PolicyStatement({
          actions: ['ssm:GetServiceSetting', 'ssm:UpdateServiceSetting', 'ssm:ResetServiceSetting'],
          resources: [settingArn],
        }),
        new iam.PolicyStatement({
          actions: ['iam:PassRole'],
          resources: [this.role.roleArn],
          conditions: { StringEquals: { 'iam:PassedToService': 'ssm.amazonaws.com' } },
        }),
        new iam.PolicyStatement({
          actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
          resources: [`${logGroupArn}:log-stream:*`],
        }),
      ],
    });
    acknowledgeNagFindings(cfnResourceOf(handlerPolicy), {
      rule: 'AwsSolutions-IAM5',
      finding: `Resource::${nagFindingValue(this, `${logGroupArn}:log-stream:*`)}`,
      reason: 'Lambda names its log streams itself at run time; the wildcard covers only the streams of this function\'s own log group.',
    });
    const handlerRole = new iam.Role(this, 'HandlerRole', {
      description: 'Custom resource handler that sets the Default Host Management Configuration role (cdk-agent-fleet)',
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      managedPolicies: [handlerPolicy],
    });

    const reasons: Record<string, string> = {
      LambdaConcurrency: 'CloudFormation invokes this custom resource handler a few times per deployment; reserving concurrency would take capacity from the account (new accounts cannot reserve any) without protecting anything.',
      LambdaDLQ: 'CloudFormation is the only caller and learns the outcome from the handler\'s response, which reports every failure; a dead-letter queue would hold events nobody replays.',
      LambdaInsideVPC: 'The handler only calls the regional SSM API and CloudFormation\'s response URL; it touches no data in a VPC, and placing it in one would require NAT or endpoints for no benefit (pass `vpc` to AgentAutoConfiguration to do so anyway).',
    };
    const handler = createHandlerFunction(this, 'Handler', {
      area: 'targeting',
      handler: 'default-host-management',
      description: 'Sets the SSM Default Host Management Configuration role and restores the previous one on delete (cdk-agent-fleet)',
      // Every permission is in the handler policy (a VPC's network policy is added beside it).
      role: handlerRole.withoutPolicyUpdates(),
      timeout: Duration.minutes(1),
      vpc: network.vpc,
      vpcSubnets: network.vpcSubnets,
      memorySize: 256,
      logGroup,
      dependsOn: [handlerPolicy],
      // PCI DSS has no concurrency rule.
      acknowledgments: LAMBDA_NAG_PACKS.flatMap((pack) => Object.entries(reasons)
        .filter(([rule]) => !(pack === 'PCI.DSS.321' && rule === 'LambdaConcurrency'))
        .flatMap(([rule, reason]) => lambdaRuleAcks(rule, reason, [pack]))),
    });

    new CustomResource(this, 'Resource', {
      resourceType: 'Custom::DefaultHostManagement',
      serviceToken: handler.functionArn,
      serviceTimeout: Duration.minutes(2),
      properties: { RoleName: this.role.roleName },
    });
  }
}

