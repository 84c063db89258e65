import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { PackageSigningKey } from './package-signing-key';
import { AgentEndpointService } from '../network/agent-endpoint-service';

/**
 * The package format of one build of the agent.
 */
export enum PackageFormat {
  /** An RPM package, installed with `rpm` on hosts that use dnf or yum. */
  RPM = 'RPM',
  /** A Debian package, installed with `dpkg` on hosts that use apt. */
  DEB = 'DEB',
  /** A Windows Installer package, installed with `msiexec`. */
  MSI = 'MSI',
  /**
   * An SSM Distributor package, installed by SSM Agent's `aws:configurePackage` plugin
   * (`DistributorPackage`); Distributor picks the build for the host.
   */
  DISTRIBUTOR = 'DISTRIBUTOR',
}

/**
 * What describes one build of the agent, wherever it is stored.
 */
export interface AgentPackageOptions {
  /** The package format. */
  readonly format: PackageFormat;

  /** The CPU architecture the build is for: `X86_64` or `ARM_64`. */
  readonly architecture: ec2.InstanceArchitecture;

  /**
   * The SHA-256 of the package file: 64 hexadecimal characters. The install document
   * installs nothing whose hash differs.
   *
   * @default - none: then `signingKey` is required, and any build the key signed installs
   */
  readonly sha256?: string;

  /**
   * The vendor's signing key: the install document installs only a package whose signature
   * this key (and only this key) verifies; anything else ends `signature-mismatch`, with
   * nothing installed. An OpenPGP key (`PackageSigningKey.fromFile`) for RPM and DEB, an
   * Authenticode publisher (`PackageSigningKey.authenticodePublisher`) for MSI.
   *
   * @default - none: then `sha256` is required
   */
  readonly signingKey?: PackageSigningKey;

  /**
   * Where the detached OpenPGP signature of a DEB package is (Debian packages carry no
   * signature of their own): an `https://` URL for `fromUrl`, an object key in the same
   * bucket for `fromBucket`. Binary (`.sig`) or armored (`.asc`), made over the whole `.deb`
   * file (`gpg --detach-sign`). Only for DEB packages with a `signingKey`, and required there.
   *
   * @default - none
   */
  readonly detachedSignature?: string;

  /**
   * The agent version this package installs, as the package manager reports it
   * (`1.2.3`; an installed `1.2.3-1` or `2:1.2.3-1` counts as this version).
   *
   * Letters, digits and `._+~:-`, starting with a letter or digit, at most 128 characters.
   *
   * With an OpenPGP `signingKey` it may be left out: every Install then downloads the
   * package, verifies it, and installs it when its own version (`rpm -qp`, `dpkg-deb -f`) is
   * newer than the installed one, so a newer signed build at the same location upgrades the
   * fleet without a new deployment. When given with a key, the signed package must be that
   * version (`unexpected-package` otherwise).
   *
   * @default - required, except for RPM and DEB packages with a `signingKey`: the version
   *   of the signed package found at the location
   */
  readonly version?: string;

  /**
   * The service the agent runs as (a systemd unit on Linux, a Windows service), checked
   * after every install.
   *
   * Letters, digits and `._@-`, at most 128 characters.
   */
  readonly serviceName: string;

  /**
   * The name the package manager knows the agent by: the rpm or dpkg package name, or the
   * `DisplayName` the MSI registers (Programs and Features).
   *
   * For rpm and dpkg: letters, digits and `._+-`; for MSI also spaces.
   *
   * @default - the service name
   */
  readonly packageName?: string;

  /**
   * Interface endpoints the agent needs to reach its vendor from private subnets;
   * `AgentVpcEndpoints` (and so `AgentFleet`) creates them.
   *
   * @default - none
   */
  readonly vpcEndpoints?: AgentEndpointService[];
}

/**
 * Where one build of the agent lives, pinned by its SHA-256.
 *
 * `AgentInstallDocument` validates packages (hash, URL, names, no duplicate
 * format and architecture) and bakes them into the document at synth.
 */
export abstract class AgentPackage {
  /**
   * A package downloaded over HTTPS.
   *
   * @param url an `https://` URL without credentials, quotes or spaces
   * @param options format, architecture, hash, version and service
   */
  public static fromUrl(url: string, options: AgentPackageOptions): AgentPackage {
    return new UrlPackage(url, options);
  }

  /**
   * A package stored as an S3 object, downloaded with the instance role.
   *
   * @param bucket the bucket that holds the package
   * @param key the object key: letters, digits and `!_.()/-`
   * @param options format, architecture, hash, version and service
   */
  public static fromBucket(bucket: s3.IBucket, key: string, options: AgentPackageOptions): AgentPackage {
    return new BucketPackage(bucket, key, options);
  }

  /** The package format. */
  public readonly format: PackageFormat;
  /** The CPU architecture the build is for. */
  public readonly architecture: ec2.InstanceArchitecture;
  /** The SHA-256 of the package file, as given. */
  public readonly sha256?: string;
  /** The vendor signing key the package must be signed with, as given. */
  public readonly signingKey?: PackageSigningKey;
  /** Where the detached signature of a DEB package is, as given. */
  public readonly detachedSignature?: string;
  /** The agent version this package installs; undefined: the signed package's own. */
  public readonly version?: string;
  /** The service the agent runs as. */
  public readonly serviceName: string;
  /** The name the package manager knows the agent by. */
  public readonly packageName: string;
  /** Interface endpoints the agent needs. */
  public readonly vpcEndpoints: AgentEndpointService[];

  protected constructor(options: AgentPackageOptions) {
    this.format = options.format;
    this.architecture = options.architecture;
    this.sha256 = options.sha256;
    this.signingKey = options.signingKey;
    this.detachedSignature = options.detachedSignature;
    this.version = options.version;
    this.serviceName = options.serviceName;
    this.packageName = options.packageName ?? options.serviceName;
    this.vpcEndpoints = [...(options.vpcEndpoints ?? [])];
  }

  /** The `https://` URL the package is downloaded from, for packages created with `fromUrl`. */
  public abstract readonly url?: string;

  /** The bucket that holds the package, for packages created with `fromBucket`. */
  public abstract readonly bucket?: s3.IBucket;

  /** The object key of the package in `bucket`, for packages created with `fromBucket`. */
  public abstract readonly objectKey?: string;

  /**
   * Lets an instance role download this package: `s3:GetObject` on the one object and its
   * detached signature, if any (plus
   * `kms:Decrypt` when the bucket has a KMS key). Nothing for an HTTPS package.
   *
   * @param grantee the instance role
   */
  public abstract grantRead(grantee: iam.IGrantable): iam.Grant;
}

class UrlPackage extends AgentPackage {
  public readonly url?: string;
  public readonly bucket?: s3.IBucket;
  public readonly objectKey?: string;

  constructor(url: string, options: AgentPackageOptions) {
    super(options);
    this.url = url;
  }

  public grantRead(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.drop(grantee, `download ${this.url}`);
  }
}

class BucketPackage extends AgentPackage {
  public readonly url?: string;
  public readonly bucket: s3.IBucket;
  public readonly objectKey: string;

  constructor(bucket: s3.IBucket, key: string, options: AgentPackageOptions) {
    super(options);
    this.bucket = bucket;
    this.objectKey = key;
  }

  public grantRead(grantee: iam.IGrantable): iam.Grant {
    const keys = [this.objectKey, ...(this.detachedSignature !== undefined ? [this.detachedSignature] : [])];
    const read = iam.Grant.addToPrincipalOrResource({
      grantee,
      actions: ['s3:GetObject'],
      resourceArns: keys.map((key) => this.bucket.arnForObjects(key)),
      resource: this.bucket,
    });
    return this.bucket.encryptionKey ? read.combine(this.bucket.encryptionKey.grantDecrypt(grantee)) : read;
  }
}
