import { Duration, Names, Token } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';
import { AssociationSchedule } from './association-schedule';
import { AutoConfigurationMode } from './auto-configuration-mode';
import { DefaultHostManagement } from './default-host-management';
import { tagEverywhere } from '../core/cdk-compat';
import { grantKeyThroughS3 } from '../core/key-through-s3';
import { acknowledgeNagFindings, nagFindingValue } from '../core/nag';
import { PropsValidator } from '../core/validation';
import { AgentInstallDocument } from '../install/agent-install-document';
import { TAG_KEY_ALLOWED, TAG_KEY_PATTERN } from '../install/document-parameters';
import { TelemetryStore } from '../telemetry/telemetry-store';

/**
 * The compliance severity State Manager records when an association fails on an instance.
 */
export enum AssociationComplianceSeverity {
  /** Critical. */
  CRITICAL = 'CRITICAL',
  /** High. */
  HIGH = 'HIGH',
  /** Medium. */
  MEDIUM = 'MEDIUM',
  /** Low. */
  LOW = 'LOW',
  /** Unspecified. */
  UNSPECIFIED = 'UNSPECIFIED',
}

/**
 * What tunes an AgentAutoConfiguration (rate control, schedule, compliance, removal from
 * excluded instances), without what connects it to other parts (the document, the mode and tag
 * key, where output goes). `AgentFleet` takes these.
 */
export interface AgentAutoConfigurationOptions {
  /**
   * How many of the targeted instances run the document at the same time, in percent.
   *
   * An integer from 1 to 100.
   *
   * @default 10
   */
  readonly maxConcurrencyPercentage?: number;

  /**
   * How many failures State Manager tolerates before it stops sending the document to
   * more instances, in percent of the targets. The rollout stops at the error *after*
   * the limit: with 5% of 200 instances (10), the 11th failure stops it. Instances
   * already running finish. 0 stops at the first failure.
   *
   * An integer from 0 to 100.
   *
   * @default 5
   */
  readonly maxErrorsPercentage?: number;

  /**
   * How often the association re-applies the document (new instances are picked up as
   * they register). The first run starts when the association is created.
   *
   * @default AssociationSchedule.rate(Duration.days(1))
   */
  readonly schedule?: AssociationSchedule;

  /**
   * The compliance severity of a failed install.
   *
   * @default AssociationComplianceSeverity.HIGH
   */
  readonly complianceSeverity?: AssociationComplianceSeverity;

  /**
   * Also uninstall the agent from instances tagged `<tagKey>=false`, with a second
   * association. Without it an agent already installed on an instance that becomes
   * excluded is left alone.
   *
   * @default false
   */
  readonly uninstallWhenExcluded?: boolean;

  /**
   * Turn on SSM Default Host Management Configuration in this account and region, so
   * instances without an instance profile become SSM-managed too (and so get the agent).
   * The previous setting is restored when this construct leaves the stack.
   *
   * @default false
   */
  readonly enableDefaultHostManagement?: boolean;

  /**
   * VPC to run the Default Host Management custom resource's function in, with a security
   * group of its own that admits nothing and lets out HTTPS only. It calls the SSM API and
   * answers CloudFormation through a presigned S3 URL (the `cloudformation-custom-resource-
   * response-<region>` bucket): the subnets need a route to both, through a NAT gateway or
   * an SSM interface endpoint and an S3 gateway endpoint whose policy admits that bucket.
   * Needed for AWS Control Tower's CT.LAMBDA.PR.3. Only with `enableDefaultHostManagement`.
   *
   * @default - the function runs outside any VPC
   */
  readonly vpc?: ec2.IVpc;

  /**
   * Subnets of `vpc` for the function. Only together with `vpc`; public subnets are refused.
   *
   * @default - the private subnets of `vpc`
   */
  readonly vpcSubnets?: ec2.SubnetSelection;

  /**
   * Prefix of the association names (`<prefix>-install`, `<prefix>-uninstall-excluded`).
   * 3-100 letters, digits and `_-.`.
   *
   * @default - a name unique to this construct, starting with its path
   */
  readonly associationNamePrefix?: string;
}

/**
 * Properties of an AgentAutoConfiguration.
 */
export interface AgentAutoConfigurationProps extends AgentAutoConfigurationOptions {
  /** The install document the associations run. */
  readonly document: AgentInstallDocument;

  /**
   * Which instances get the agent.
   *
   * @default AutoConfigurationMode.ALL_INSTANCES
   */
  readonly mode?: AutoConfigurationMode;

  /**
   * The instance tag that includes (`true`) or excludes (`false`) an instance. Read from
   * instance metadata tags on the host, so it must be a key IMDS can carry: letters,
   * digits and `+-=.,_:@`, no spaces or `/`.
   *
   * @default - the document's tagKey (`SecurityAgentManaged` unless set there)
   */
  readonly tagKey?: string;

  /**
   * The telemetry store: association output goes into it (unless `outputBucket` is set),
   * and `grantInstanceRole` lets instances write telemetry into it.
   *
   * @default - no telemetry grant; output only to `outputBucket` if given
   */
  readonly telemetryStore?: TelemetryStore;

  /**
   * A bucket for the association output instead of the telemetry store.
   *
   * @default - the telemetry store's bucket, if given; otherwise output stays in the SSM console (truncated)
   */
  readonly outputBucket?: s3.IBucket;

  /**
   * Key prefix of the association output in the output bucket, without a trailing `/`.
   *
   * @default 'ssm-association-output'
   */
  readonly outputPrefix?: string;
}

/**
 * Installs the agent on the fleet with State Manager associations, with GuardDuty's
 * inclusion/exclusion tag semantics (see `AutoConfigurationMode`).
 */
export class AgentAutoConfiguration extends Construct {
  /** The association that installs the agent. */
  public readonly association: ssm.CfnAssociation;

  /** The association that uninstalls the agent from excluded instances, if enabled. */
  public readonly uninstallAssociation?: ssm.CfnAssociation;

  /** The role SSM Default Host Management Configuration uses, if enabled. */
  public readonly defaultHostManagementRole?: iam.IRole;

  /** The mode. */
  public readonly mode: AutoConfigurationMode;

  /** The tag key. */
  public readonly tagKey: string;

  /** Where association output goes, if anywhere. */
  public readonly outputBucket?: s3.IBucket;

  /** The key prefix of the association output. */
  public readonly outputPrefix: string;

  private readonly document: AgentInstallDocument;
  private readonly telemetryStore?: TelemetryStore;

  constructor(scope: Construct, id: string, props: AgentAutoConfigurationProps) {
    super(scope, id);
    validateProps(this, props);

    this.document = props.document;
    this.telemetryStore = props.telemetryStore;
    this.mode = props.mode ?? AutoConfigurationMode.ALL_INSTANCES;
    this.tagKey = props.tagKey ?? props.document.tagKey;
    this.outputBucket = props.outputBucket ?? props.telemetryStore?.bucket;
    this.outputPrefix = props.outputPrefix ?? 'ssm-association-output';
    const namePrefix = props.associationNamePrefix ?? Names.uniqueResourceName(this, { maxLength: 90, separator: '-' });

    const common = {
      name: props.document.documentName,
      documentVersion: '$LATEST',
      scheduleExpression: (props.schedule ?? AssociationSchedule.rate(Duration.days(1))).expressionString,
      maxConcurrency: `${props.maxConcurrencyPercentage ?? 10}%`,
      maxErrors: `${props.maxErrorsPercentage ?? 5}%`,
      complianceSeverity: props.complianceSeverity ?? AssociationComplianceSeverity.HIGH,
      syncCompliance: 'AUTO',
      applyOnlyAtCronInterval: false,
      outputLocation: this.outputBucket ? {
        s3Location: {
          outputS3BucketName: this.outputBucket.bucketName,
          outputS3KeyPrefix: this.outputPrefix,
          outputS3Region: this.outputBucket.env.region,
        },
      } : undefined,
    };

    this.association = new ssm.CfnAssociation(this, 'Resource', {
      ...common,
      associationName: `${namePrefix}-install`,
      parameters: { action: ['Install'], mode: [this.mode], tagKey: [this.tagKey] },
      targets: this.mode === AutoConfigurationMode.ALL_INSTANCES
        ? [{ key: 'InstanceIds', values: ['*'] }]
        : [{ key: `tag:${this.tagKey}`, values: ['true'] }],
    });

    if (props.uninstallWhenExcluded) {
      this.uninstallAssociation = new ssm.CfnAssociation(this, 'UninstallExcluded', {
        ...common,
        associationName: `${namePrefix}-uninstall-excluded`,
        parameters: { action: ['Uninstall'], mode: [this.mode], tagKey: [this.tagKey] },
        targets: [{ key: `tag:${this.tagKey}`, values: ['false'] }],
      });
    }

    if (props.enableDefaultHostManagement) {
      const dhmc = new DefaultHostManagement(this, 'DefaultHostManagement', { vpc: props.vpc, vpcSubnets: props.vpcSubnets });
      this.defaultHostManagementRole = dhmc.role;
      // Instances managed through it download packages, write output and send telemetry
      // with this role: the same grants as an instance role, less SSM core (its AWS policy has that).
      this.grantPackagesAndOutput(dhmc.role);
      this.telemetryStore?.grantAgentWrite(dhmc.role);
      const policy = dhmc.role.node.tryFindChild('DefaultPolicy')?.node.defaultChild;
      if (policy) this.acknowledgeGrantFindings(policy as never, 'the Default Host Management role');
    }

    tagEverywhere(this, 'cdk-agent-fleet:component', 'auto-configuration');
  }

  /**
   * Gives an instance role what the agent's rollout needs: SSM core
   * (`AmazonSSMManagedInstanceCore`), read access to the package objects, writing the
   * association output under `outputPrefix`, and — with a telemetry store — writing
   * telemetry under the instance's own prefix.
   *
   * cdk-nag reports on your role, for you to acknowledge there if you accept them:
   * `AwsSolutions-IAM4` (the AWS-managed SSM core policy), `AwsSolutions-IAM5` (the
   * per-instance telemetry prefix and the output prefix wildcards) and
   * `*-IAMNoInlinePolicy` (CDK grants write the role's default policy).
   *
   * @param role the instance role
   */
  public grantInstanceRole(role: iam.IRole): void {
    role.addManagedPolicy(iam.ManagedPolicy.fromAwsManagedPolicyName('AmazonSSMManagedInstanceCore'));
    this.grantPackagesAndOutput(role);
    this.telemetryStore?.grantAgentWrite(role);
  }

  private grantPackagesAndOutput(grantee: iam.IGrantable): void {
    this.document.grantPackageRead(grantee);
    this.document.grantActivationRead(grantee);
    const bucket = this.outputBucket;
    if (!bucket) return;
    iam.Grant.addToPrincipalOrResource({
      grantee,
      actions: ['s3:PutObject'],
      resourceArns: [bucket.arnForObjects(`${this.outputPrefix}/*`)],
      resource: bucket,
    });
    // SSM Agent checks the bucket's encryption before it uploads output.
    iam.Grant.addToPrincipalOrResource({
      grantee,
      actions: ['s3:GetEncryptionConfiguration'],
      resourceArns: [bucket.bucketArn],
      resource: bucket,
    });
    // The key only through S3 and only for this bucket, never directly. The store's bucket uses
    // S3 Bucket Keys (context: the bucket); a bucket of yours may not (context: the object).
    if (bucket.encryptionKey) {
      grantKeyThroughS3(grantee, ['kms:GenerateDataKey', 'kms:Decrypt'], {
        key: bucket.encryptionKey,
        bucket,
        objectPrefix: bucket === this.telemetryStore?.bucket ? undefined : `${this.outputPrefix}/`,
      });
    }
  }

  private acknowledgeGrantFindings(policy: iam.CfnPolicy, whose: string): void {
    const bucket = this.outputBucket;
    if (bucket) {
      acknowledgeNagFindings(policy, {
        rule: 'AwsSolutions-IAM5',
        finding: `Resource::${nagFindingValue(this, bucket.arnForObjects(`${this.outputPrefix}/*`))}`,
        reason: `SSM Agent names output objects after the command and instance at run time; ${whose} may only put objects below the association output prefix.`,
      });
    }
    const store = this.telemetryStore;
    if (store) {
      acknowledgeNagFindings(policy, {
        rule: 'AwsSolutions-IAM5',
        finding: `Resource::${nagFindingValue(this, store.bucket.arnForObjects(`${store.agentPrefix}\${aws:userid}/*`))}`,
        reason: `The wildcard is each instance's own telemetry folder: \${aws:userid} is ROLEID:<instance id>, so ${whose} lets an instance put objects under its own prefix only.`,
      });
    }
    for (const rule of ['NIST.800.53.R5-IAMNoInlinePolicy', 'HIPAA.Security-IAMNoInlinePolicy', 'PCI.DSS.321-IAMNoInlinePolicy']) {
      acknowledgeNagFindings(policy, {
        rule,
        reason: `The grants to ${whose} (package objects, association output, telemetry) belong to this one role and are managed with it; a separate managed policy would only add an attachment to review.`,
      });
    }
  }
}

const NAME_PREFIX = /^[A-Za-z0-9_.-]{3,100}$/;
const OUTPUT_PREFIX = /^[A-Za-z0-9!_'()-][A-Za-z0-9!_.'()-]*(\/[A-Za-z0-9!_'()-][A-Za-z0-9!_.'()-]*)*$/;

function validateProps(scope: Construct, props: AgentAutoConfigurationProps): void {
  const v = new PropsValidator(scope);
  v.integerInRange('maxConcurrencyPercentage', props.maxConcurrencyPercentage, 1, 100);
  v.integerInRange('maxErrorsPercentage', props.maxErrorsPercentage, 0, 100);
  v.require(!(props.vpc && !props.enableDefaultHostManagement), 'vpc', props.vpc?.node.path,
    'only with enableDefaultHostManagement: the Default Host Management function is the only function created here');
  v.require(!(props.vpcSubnets && !props.vpc), 'vpcSubnets', props.vpcSubnets, 'only together with vpc');
  if (props.tagKey !== undefined && !Token.isUnresolved(props.tagKey)) {
    v.require(new RegExp(TAG_KEY_PATTERN).test(props.tagKey), 'tagKey', props.tagKey, TAG_KEY_ALLOWED);
  }
  const scheduleProblem = props.schedule?._problem();
  v.require(scheduleProblem === undefined, 'schedule', props.schedule?.expressionString, scheduleProblem ?? '');
  if (props.outputPrefix !== undefined && !Token.isUnresolved(props.outputPrefix)) {
    v.require(OUTPUT_PREFIX.test(props.outputPrefix) && props.outputPrefix.length <= 500, 'outputPrefix', props.outputPrefix,
      "segments of letters, digits and !_.'()- separated by '/', no leading or trailing '/', at most 500 characters");
  }
  v.require(props.outputPrefix === undefined || props.outputBucket !== undefined || props.telemetryStore !== undefined,
    'outputPrefix', props.outputPrefix, 'only with outputBucket or telemetryStore: there is no output bucket to put it in');
  if (props.associationNamePrefix !== undefined && !Token.isUnresolved(props.associationNamePrefix)) {
    v.require(NAME_PREFIX.test(props.associationNamePrefix), 'associationNamePrefix', props.associationNamePrefix, '3-100 letters, digits and _-.');
  }
  v.require(props.mode === undefined || Object.values(AutoConfigurationMode).includes(props.mode), 'mode', props.mode,
    'AutoConfigurationMode.ALL_INSTANCES or AutoConfigurationMode.TAGGED_ONLY');
  v.throwIfInvalid();
}
