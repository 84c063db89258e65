/*
 * Synth time of the full fleet with endpoints in 1, 10 and 50 VPCs, against an empty stack
 * and against the same VPCs without the fleet, all measured interleaved in the same run.
 * The fleet's cost should grow linearly with the VPCs: one AgentVpcEndpoints per VPC.
 */
import { App, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { AgentFleet } from '../lib';
import { agentPackages } from '../examples/shared/fleet-parts';

type Variant = 'empty' | 'vpcs' | 'fleet';

function synthMillis(variant: Variant, vpcCount: number): number {
  const started = process.hrtime.bigint();
  const app = new App();
  const stack = new Stack(app, 'Bench', { env: { account: '111111111111', region: 'eu-west-1' } });
  if (variant === 'empty') {
    new ec2.CfnVPC(stack, 'Placeholder', { cidrBlock: '10.0.0.0/16' }); // a template needs one resource
  } else {
    const vpcs = Array.from({ length: vpcCount }, (_, i) => new ec2.Vpc(stack, `Vpc${i}`, {
      ipAddresses: ec2.IpAddresses.cidr(`10.${i}.0.0/16`),
      maxAzs: 2,
      natGateways: 0,
      subnetConfiguration: [{ name: 'Workloads', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }],
    }));
    if (variant === 'fleet') {
      new AgentFleet(stack, 'Fleet', { agentName: 'bench-agent', packages: agentPackages(), imds: { hopLimit: 2 }, vpcs });
    }
  }
  app.synth();
  return Number(process.hrtime.bigint() - started) / 1e6;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

export async function run(): Promise<void> {
  for (let i = 0; i < 3; i++) synthMillis('fleet', 2); // warm up module loading and the JIT
  const counts = [1, 10, 50];
  const rounds = 5;
  const results = new Map<number, { empty: number; vpcs: number; fleet: number }>();
  for (const n of counts) {
    const samples = { empty: [] as number[], vpcs: [] as number[], fleet: [] as number[] };
    for (let r = 0; r < rounds; r++) {
      samples.empty.push(synthMillis('empty', n));
      samples.vpcs.push(synthMillis('vpcs', n));
      samples.fleet.push(synthMillis('fleet', n));
    }
    results.set(n, { empty: median(samples.empty), vpcs: median(samples.vpcs), fleet: median(samples.fleet) });
  }

  console.log('| VPCs | empty stack (ms) | VPCs only (ms) | VPCs + AgentFleet (ms) | fleet / empty | fleet / VPCs only | fleet cost per VPC (ms) |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const n of counts) {
    const r = results.get(n)!;
    const perVpc = (r.fleet - r.vpcs - (results.get(1)!.fleet - results.get(1)!.vpcs)) / Math.max(n - 1, 1);
    console.log(`| ${n} | ${r.empty.toFixed(0)} | ${r.vpcs.toFixed(0)} | ${r.fleet.toFixed(0)} | ${(r.fleet / r.empty).toFixed(1)} | ${(r.fleet / r.vpcs).toFixed(2)} | ${n === 1 ? '—' : perVpc.toFixed(1)} |`);
  }
  // Linear growth: the fleet's own cost per added VPC is the same from 1 to 10 as from 10 to 50.
  const own = (n: number) => results.get(n)!.fleet - results.get(n)!.vpcs;
  const slopeLow = (own(10) - own(1)) / 9;
  const slopeHigh = (own(50) - own(10)) / 40;
  console.log(`\nfleet's own cost per added VPC: ${slopeLow.toFixed(1)} ms (1→10), ${slopeHigh.toFixed(1)} ms (10→50); `
    + `ratio ${(slopeHigh / slopeLow).toFixed(2)} (1.00 = linear)`);
}
