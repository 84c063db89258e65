import * as path from 'node:path';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Host } from './host';
import { BuiltPackage } from './packages';
import { PACKAGE_HOST } from './roots';
import { AgentPackage, PackageFormat } from '../../lib';

/** The AgentPackage a user would declare for a built package, served by the host's package server. */
export function declare(host: Host, built: BuiltPackage, format: 'DEB' | 'RPM', version: string): AgentPackage {
  const name = path.basename(built.file);
  host.serve(name, built.file);
  return AgentPackage.fromUrl(`https://${PACKAGE_HOST}/${name}`, {
    format: format === 'DEB' ? PackageFormat.DEB : PackageFormat.RPM,
    architecture: process.arch === 'arm64' ? ec2.InstanceArchitecture.ARM_64 : ec2.InstanceArchitecture.X86_64,
    sha256: built.sha256, version, serviceName: built.name, packageName: built.name,
  });
}
