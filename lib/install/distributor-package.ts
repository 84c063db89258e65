import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AgentPackage, PackageFormat } from './agent-package';
import { AgentEndpointService } from '../network/agent-endpoint-service';

/**
 * How `aws:configurePackage` replaces an installed version (the plugin's `installationType`).
 */
export enum DistributorInstallationType {
  /** The application is taken offline until the reinstallation completes (Distributor's default). */
  UNINSTALL_AND_REINSTALL = 'Uninstall and reinstall',
  /** The application stays available while new or updated files are added. */
  IN_PLACE_UPDATE = 'In-place update',
}

/**
 * What describes an SSM Distributor package. No hash or signing key: Distributor verifies
 * its own packages, and a `sha256` given anyway is a synth error.
 */
export interface DistributorPackageOptions {
  /**
   * The service the package runs (a systemd unit): what `Verify` checks.
   *
   * Letters, digits and `._@-`, at most 128 characters.
   */
  readonly serviceName: string;

  /**
   * The Distributor version to install, as Distributor names it (e.g. `v1.8.0`).
   *
   * @default - Distributor's choice: the latest published (AWS-owned) or default version
   */
  readonly version?: string;

  /**
   * How an installed version is replaced.
   *
   * @default DistributorInstallationType.UNINSTALL_AND_REINSTALL
   */
  readonly installationType?: DistributorInstallationType;

  /**
   * Interface endpoints the agent needs to reach its vendor from private subnets;
   * `AgentVpcEndpoints` (and so `AgentFleet`) creates them.
   *
   * @default - none
   */
  readonly vpcEndpoints?: AgentEndpointService[];
}

/**
 * An SSM Distributor package, installed by SSM Agent's `aws:configurePackage` plugin
 * (as `AWS-ConfigureAWSPackage` does). The install document then has two Linux steps: the
 * usual script decides by the tag (and answers `Verify`), and the Distributor step runs only
 * when it lets it (SSM Agent skips every later step when a step exits 168 or 169).
 *
 * A document holds one Distributor package and no other package. Linux only: on Windows
 * both steps are skipped.
 */
export class DistributorPackage extends AgentPackage {
  /**
   * A package AWS publishes in Distributor (Owned by Amazon), e.g.
   * `AmazonGuardDuty-RuntimeMonitoringSsmPlugin`. Instances need only
   * `AmazonSSMManagedInstanceCore`.
   *
   * @param name the package name
   * @param options service, version, installation type
   */
  public static awsOwned(name: string, options: DistributorPackageOptions): DistributorPackage {
    return new DistributorPackage(name, true, options);
  }

  /**
   * A package of yours (a Distributor `Package` document), by name (in this account) or by
   * ARN (shared with this account). SSM Agent reads it with `ssm:DescribeDocument` and
   * `ssm:GetDocument` and downloads its attachments from the URLs SSM returns, all within
   * `AmazonSSMManagedInstanceCore`; your bucket is read only when the package is created.
   *
   * @param nameOrArn the package's name or ARN
   * @param options service, version, installation type
   */
  public static fromName(nameOrArn: string, options: DistributorPackageOptions): DistributorPackage {
    return new DistributorPackage(nameOrArn, false, options);
  }

  /** The package's name or ARN. */
  public readonly distributorName: string;
  /** Whether AWS owns the package. */
  public readonly isAwsOwned: boolean;
  /** How an installed version is replaced. */
  public readonly installationType: DistributorInstallationType;
  public readonly url?: string;
  public readonly bucket?: s3.IBucket;
  public readonly objectKey?: string;

  private constructor(name: string, awsOwned: boolean, options: DistributorPackageOptions) {
    super({
      format: PackageFormat.DISTRIBUTOR,
      // Distributor picks the build for the host's CPU; this field is not used.
      architecture: ec2.InstanceArchitecture.X86_64,
      // Passed through so that validation can refuse one given anyway (JavaScript callers).
      sha256: (options as { sha256?: string }).sha256,
      version: options.version,
      serviceName: options.serviceName,
      vpcEndpoints: options.vpcEndpoints,
    });
    this.distributorName = name;
    this.isAwsOwned = awsOwned;
    this.installationType = options.installationType ?? DistributorInstallationType.UNINSTALL_AND_REINSTALL;
  }

  /**
   * Nothing to grant: `AmazonSSMManagedInstanceCore` already allows `ssm:GetManifest`,
   * `ssm:DescribeDocument`, `ssm:GetDocument` and `ssm:PutConfigurePackageResult`.
   *
   * @param grantee the instance role
   */
  public grantRead(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.drop(grantee, `install Distributor package ${this.distributorName}`);
  }
}
