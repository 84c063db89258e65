/*
 * What the examples and the app in bin/ share: the agent's builds. Replace the URLs and SHA-256 sums with those of
 * your agent's release; the library installs nothing whose hash does not match.
 */
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { AgentPackage, PackageFormat } from '../../lib';

export function agentPackages(): AgentPackage[] {
  const release = { version: '4.2.0', serviceName: 'fleet-agent' };
  return [
    AgentPackage.fromUrl('https://downloads.example.com/fleet-agent/4.2.0/fleet-agent-4.2.0.x86_64.rpm', {
      ...release, format: PackageFormat.RPM, architecture: ec2.InstanceArchitecture.X86_64,
      sha256: 'c0ffee0123456789abcdef0123456789abcdef0123456789abcdef0123456789',
    }),
    AgentPackage.fromUrl('https://downloads.example.com/fleet-agent/4.2.0/fleet-agent-4.2.0.aarch64.rpm', {
      ...release, format: PackageFormat.RPM, architecture: ec2.InstanceArchitecture.ARM_64,
      sha256: 'c0ffee1123456789abcdef0123456789abcdef0123456789abcdef0123456789',
    }),
    AgentPackage.fromUrl('https://downloads.example.com/fleet-agent/4.2.0/fleet-agent_4.2.0_amd64.deb', {
      ...release, format: PackageFormat.DEB, architecture: ec2.InstanceArchitecture.X86_64,
      sha256: 'c0ffee2123456789abcdef0123456789abcdef0123456789abcdef0123456789',
    }),
    AgentPackage.fromUrl('https://downloads.example.com/fleet-agent/4.2.0/fleet-agent-4.2.0-x64.msi', {
      ...release, format: PackageFormat.MSI, architecture: ec2.InstanceArchitecture.X86_64, packageName: 'Fleet Agent',
      sha256: 'c0ffee3123456789abcdef0123456789abcdef0123456789abcdef0123456789',
    }),
  ];
}

/** A VPC whose private subnets reach AWS only through the fleet's endpoints (no NAT). */
export function isolatedVpc(scope: import('constructs').Construct, id: string): ec2.Vpc {
  return new ec2.Vpc(scope, id, {
    maxAzs: 2,
    natGateways: 0,
    subnetConfiguration: [{ name: 'Workloads', subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: 22 }],
  });
}
