import { Stack, Token } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { AgentEndpointService } from './agent-endpoint-service';
import { PropsValidator } from '../core/validation';
import { AgentInstallDocument } from '../install/agent-install-document';
import { TelemetryStore } from '../telemetry/telemetry-store';

export { AgentEndpointService } from './agent-endpoint-service';


/**
 * What tunes AgentVpcEndpoints in one VPC (subnets, endpoints that exist already, secondary
 * CIDR blocks), without what connects them to other parts. `AgentFleet` takes these and
 * applies them to each of its VPCs.
 */
export interface AgentVpcEndpointsOptions {
  /**
   * Where the interface endpoints' network interfaces go (one per Availability Zone).
   *
   * @default - the VPC's private subnets
   */
  readonly subnets?: ec2.SubnetSelection;

  /**
   * Endpoints the VPC already has: they are not created again.
   *
   * @default - none: every endpoint is created
   */
  readonly existingEndpoints?: AgentEndpointService[];

  /**
   * CIDR blocks of the VPC besides `vpc.vpcCidrBlock` (secondary blocks) whose instances
   * must reach the interface endpoints.
   *
   * @default - only the VPC's primary CIDR block
   */
  readonly additionalCidrBlocks?: string[];
}

/**
 * Properties of AgentVpcEndpoints.
 */
export interface AgentVpcEndpointsProps extends AgentVpcEndpointsOptions {
  /** The VPC whose instances run the agent. */
  readonly vpc: ec2.IVpc;

  /**
   * Also create an `execute-api` endpoint, for a private agent backend API.
   *
   * @default false
   */
  readonly executeApi?: boolean;

  /**
   * The telemetry store: the S3 endpoint lets instances put objects into it.
   *
   * @default - no telemetry bucket through the endpoint
   */
  readonly telemetryStore?: TelemetryStore;

  /**
   * Install documents: the S3 endpoint lets instances read their packages stored in S3
   * (those objects only).
   *
   * @default - no package objects through the endpoint
   */
  readonly documents?: AgentInstallDocument[];

  /**
   * Buckets that receive SSM association or command output (other than the telemetry store).
   *
   * @default - none
   */
  readonly outputBuckets?: s3.IBucket[];
}

/**
 * The VPC endpoints instances in private subnets need to be managed by SSM, get the agent,
 * and send telemetry: interface endpoints for ssm, ssmmessages, ec2messages (and
 * execute-api for the backend) with private DNS, reachable on 443 from the VPC only; and
 * an S3 gateway endpoint whose policy allows the fleet's buckets and the AWS-owned buckets
 * SSM Agent needs in the region — and nothing else.
 */
export class AgentVpcEndpoints extends Construct {
  /** The `ssm` interface endpoint, unless it existed already. */
  public readonly ssmEndpoint?: ec2.InterfaceVpcEndpoint;
  /** The `ssmmessages` interface endpoint, unless it existed already. */
  public readonly ssmMessagesEndpoint?: ec2.InterfaceVpcEndpoint;
  /** The `ec2messages` interface endpoint, unless it existed already. */
  public readonly ec2MessagesEndpoint?: ec2.InterfaceVpcEndpoint;
  /** The `execute-api` interface endpoint, when asked for and not existing already. */
  public readonly executeApiEndpoint?: ec2.InterfaceVpcEndpoint;
  /**
   * The `guardduty-data` interface endpoint, when a package asks for it
   * (`AgentEndpointService.GUARDDUTY_DATA`) and it did not exist already.
   */
  public readonly guardDutyDataEndpoint?: ec2.InterfaceVpcEndpoint;
  /** The S3 gateway endpoint, unless it existed already. */
  public readonly s3Endpoint?: ec2.GatewayVpcEndpoint;
  /** The security group of the interface endpoints, if any was created. */
  public readonly securityGroup?: ec2.SecurityGroup;

  constructor(scope: Construct, id: string, props: AgentVpcEndpointsProps) {
    super(scope, id);
    validateProps(this, props);
    const skip = new Set(props.existingEndpoints ?? []);
    type Wanted = [AgentEndpointService, string, ec2.InterfaceVpcEndpointAwsService];
    const wanted: Wanted[] = [
      [AgentEndpointService.SSM, 'Ssm', ec2.InterfaceVpcEndpointAwsService.SSM],
      [AgentEndpointService.SSM_MESSAGES, 'SsmMessages', ec2.InterfaceVpcEndpointAwsService.SSM_MESSAGES],
      [AgentEndpointService.EC2_MESSAGES, 'Ec2Messages', ec2.InterfaceVpcEndpointAwsService.EC2_MESSAGES],
    ];
    if (props.executeApi) {
      wanted.push([AgentEndpointService.EXECUTE_API, 'ExecuteApi', ec2.InterfaceVpcEndpointAwsService.APIGATEWAY]);
    }
    // Endpoints the agents' packages declare (vendor backends).
    const declared = new Set((props.documents ?? []).flatMap((doc) => doc.packages).flatMap((pkg) => pkg.vpcEndpoints));
    if (declared.has(AgentEndpointService.GUARDDUTY_DATA)) {
      wanted.push([AgentEndpointService.GUARDDUTY_DATA, 'GuardDutyData', new ec2.InterfaceVpcEndpointAwsService('guardduty-data')]);
    }
    const toCreate = wanted.filter(([service]) => !skip.has(service));

    const endpoints = new Map<AgentEndpointService, ec2.InterfaceVpcEndpoint>();
    if (toCreate.length > 0) {
      const securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
        vpc: props.vpc,
        description: 'HTTPS from the VPC to the interface endpoints of the agent fleet (cdk-agent-fleet)',
        allowAllOutbound: false,
      });
      for (const cidr of [primaryCidrBlock(props.vpc), ...(props.additionalCidrBlocks ?? [])]) {
        securityGroup.addIngressRule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(443), 'HTTPS from the VPC');
      }
      this.securityGroup = securityGroup;
      for (const [service, endpointId, awsService] of toCreate) {
        endpoints.set(service, new ec2.InterfaceVpcEndpoint(this, endpointId, {
          vpc: props.vpc,
          service: awsService,
          subnets: props.subnets,
          privateDnsEnabled: true,
          securityGroups: [securityGroup],
          // The security group above already admits the VPC; no extra rule for the primary CIDR.
          open: false,
        }));
      }
    }
    this.ssmEndpoint = endpoints.get(AgentEndpointService.SSM);
    this.ssmMessagesEndpoint = endpoints.get(AgentEndpointService.SSM_MESSAGES);
    this.ec2MessagesEndpoint = endpoints.get(AgentEndpointService.EC2_MESSAGES);
    this.executeApiEndpoint = endpoints.get(AgentEndpointService.EXECUTE_API);
    this.guardDutyDataEndpoint = endpoints.get(AgentEndpointService.GUARDDUTY_DATA);
    if (this.guardDutyDataEndpoint) addGuardDutyEndpointPolicy(this.guardDutyDataEndpoint);

    if (!skip.has(AgentEndpointService.S3)) {
      const s3Endpoint = new ec2.GatewayVpcEndpoint(this, 'S3', {
        vpc: props.vpc,
        service: ec2.GatewayVpcEndpointAwsService.S3,
      });
      for (const statement of s3EndpointStatements(this, props)) {
        s3Endpoint.addToPolicy(statement);
      }
      this.s3Endpoint = s3Endpoint;
    }
  }
}

/**
 * The endpoint policy GuardDuty documents for its agent's endpoint: everything, but only for
 * principals of the account that owns the VPC endpoint.
 * https://docs.aws.amazon.com/guardduty/latest/ug/creating-vpc-endpoint-ec2-agent-manually.html
 */
function addGuardDutyEndpointPolicy(endpoint: ec2.InterfaceVpcEndpoint): void {
  const anyone = [new iam.AnyPrincipal()];
  endpoint.addToPolicy(new iam.PolicyStatement({ principals: anyone, actions: ['*'], resources: ['*'] }));
  endpoint.addToPolicy(new iam.PolicyStatement({
    effect: iam.Effect.DENY, principals: anyone, actions: ['*'], resources: ['*'],
    conditions: { StringNotEquals: { 'aws:PrincipalAccount': Stack.of(endpoint).account } },
  }));
}

/**
 * The VPC's primary CIDR block: the literal one when the VPC is defined in this app with one,
 * so the security group rule says what it admits (and rule packs such as cdk-nag can judge
 * it); otherwise the VPC's attribute.
 */
function primaryCidrBlock(vpc: ec2.IVpc): string {
  const resource = vpc.node.defaultChild;
  if (resource instanceof ec2.CfnVPC && typeof resource.cidrBlock === 'string' && !Token.isUnresolved(resource.cidrBlock)) {
    return resource.cidrBlock;
  }
  return vpc.vpcCidrBlock;
}

/**
 * The AWS-owned buckets SSM Agent reads in a region (AWS Systems Manager User Guide,
 * "SSM Agent communications with AWS managed S3 buckets").
 */
function ssmAgentBucketNames(region: string): string[] {
  return [
    `aws-ssm-${region}`,
    `aws-windows-downloads-${region}`,
    `amazon-ssm-${region}`,
    `amazon-ssm-packages-${region}`,
    `${region}-birdwatcher-prod`,
    `aws-ssm-distributor-file-${region}`,
    `aws-ssm-document-attachments-${region}`,
    `patch-baseline-snapshot-${region}`,
    `aws-patchmanager-macos-${region}`,
  ];
}

function s3EndpointStatements(scope: Construct, props: AgentVpcEndpointsProps): iam.PolicyStatement[] {
  const stack = Stack.of(scope);
  const anyone = [new iam.AnyPrincipal()];
  const statements = [new iam.PolicyStatement({
    sid: 'SsmAgentAwsOwnedBuckets',
    principals: anyone,
    actions: ['s3:GetObject'],
    resources: ssmAgentBucketNames(stack.region).map((name) => `arn:${stack.partition}:s3:::${name}/*`),
  })];

  const packageObjects = (props.documents ?? []).flatMap((doc) => doc.packages)
    .filter((pkg) => pkg.bucket !== undefined)
    .map((pkg) => pkg.bucket!.arnForObjects(pkg.objectKey!));
  if (packageObjects.length > 0) {
    statements.push(new iam.PolicyStatement({ sid: 'AgentPackages', principals: anyone, actions: ['s3:GetObject'], resources: packageObjects }));
  }

  const writable = [...(props.telemetryStore ? [props.telemetryStore.bucket] : []), ...(props.outputBuckets ?? [])];
  if (writable.length > 0) {
    statements.push(new iam.PolicyStatement({
      sid: 'TelemetryAndOutput', principals: anyone, actions: ['s3:PutObject'], resources: writable.map((b) => b.arnForObjects('*')),
    }));
    statements.push(new iam.PolicyStatement({
      sid: 'OutputEncryptionCheck', principals: anyone, actions: ['s3:GetEncryptionConfiguration'], resources: writable.map((b) => b.bucketArn),
    }));
  }
  return statements;
}

const IPV4_CIDR = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}\/(\d|[12]\d|3[0-2])$/;

function validateProps(scope: Construct, props: AgentVpcEndpointsProps): void {
  const v = new PropsValidator(scope);
  (props.additionalCidrBlocks ?? []).forEach((cidr, i) => {
    if (Token.isUnresolved(cidr)) return;
    v.require(IPV4_CIDR.test(cidr), `additionalCidrBlocks[${i}]`, cidr, 'an IPv4 CIDR block, e.g. 100.64.0.0/16');
  });
  const known = Object.values(AgentEndpointService);
  (props.existingEndpoints ?? []).forEach((service, i) => {
    v.require(known.includes(service), `existingEndpoints[${i}]`, service, `one of AgentEndpointService.${known.join(', ')}`);
  });
  v.throwIfInvalid();
}
