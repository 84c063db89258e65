/*
 * Synth time of the full fleet with endpoints in 1, 10 and 50 VPCs, against an empty stack,
 * measured interleaved in the same run. The VPCs are existing ones (imported), as in most
 * accounts, so every resource in the stack is the fleet's. The cost should grow linearly with
 * the VPCs: one AgentVpcEndpoints per VPC.
 */
import { App, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { AgentFleet } from '../lib';
import { agentPackages } from '../examples/shared/fleet-parts';

function importedVpc(stack: Stack, i: number): ec2.IVpc {
  return ec2.Vpc.fromVpcAttributes(stack, `Vpc${i}`, {
    vpcId: `vpc-${i.toString(16).padStart(17, '0')}`,
    vpcCidrBlock: `10.${i}.0.0/16`,
    availabilityZones: ['eu-west-1a', 'eu-west-1b'],
    isolatedSubnetIds: [`subnet-${(2 * i).toString(16).padStart(17, '0')}`, `subnet-${(2 * i + 1).toString(16).padStart(17, '0')}`],
    isolatedSubnetRouteTableIds: [`rtb-${(2 * i).toString(16).padStart(17, '0')}`, `rtb-${(2 * i + 1).toString(16).padStart(17, '0')}`],
  });
}

/**
 * Work left over by the previous app (seen here: ~250 ms charged to whatever synthesizes
 * next, whatever its size) must not be charged to the one being measured: collect garbage
 * (`npm run bench` runs node with --expose-gc) and let a throwaway one-resource synth absorb
 * the rest.
 */
function settle(): void {
  (globalThis as { gc?: () => void }).gc?.();
  const app = new App();
  new ec2.CfnVPC(new Stack(app, 'Settle'), 'OnlyResource', { cidrBlock: '10.0.0.0/16' });
  app.synth();
}

/** Milliseconds to build and synthesize the app, and the number of resources in its template. */
function synth(vpcCount: number | 'empty'): { ms: number; resources: number } {
  settle();
  const started = process.hrtime.bigint();
  const app = new App();
  const stack = new Stack(app, 'Bench', { env: { account: '111111111111', region: 'eu-west-1' } });
  if (vpcCount === 'empty') {
    new ec2.CfnVPC(stack, 'OnlyResource', { cidrBlock: '10.0.0.0/16' }); // a template needs one resource
  } else {
    const vpcs = Array.from({ length: vpcCount }, (_, i) => importedVpc(stack, i));
    new AgentFleet(stack, 'Fleet', { agentName: 'bench-agent', packages: agentPackages(), imds: { hopLimit: 2 }, vpcs });
  }
  const assembly = app.synth();
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  return { ms, resources: Object.keys(assembly.getStackByName('Bench').template.Resources).length };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

export async function run(): Promise<void> {
  const counts = [1, 10, 50];
  // Warm up module loading and the JIT on every variant: the first synths are several times slower.
  for (let i = 0; i < 4; i++) {
    synth('empty');
    counts.forEach((n) => synth(n));
  }
  const rounds = 9;
  const empty: number[] = [];
  const fleet = new Map<number, number[]>(counts.map((n) => [n, []]));
  const resources = new Map<number, number>();
  for (let r = 0; r < rounds; r++) {
    // Interleaved, so that machine noise hits every variant alike.
    empty.push(synth('empty').ms);
    for (const n of counts) {
      const result = synth(n);
      fleet.get(n)!.push(result.ms);
      resources.set(n, result.resources);
    }
  }
  const e = median(empty);
  const t = (n: number) => median(fleet.get(n)!);

  console.log('| VPCs | resources | empty stack (ms) | AgentFleet (ms) | ratio to empty |');
  console.log('| --- | --- | --- | --- | --- |');
  for (const n of counts) {
    console.log(`| ${n} | ${resources.get(n)} | ${e.toFixed(0)} | ${t(n).toFixed(0)} | ${(t(n) / e).toFixed(1)} |`);
  }
  const perVpcLow = (t(10) - t(1)) / 9;
  const perVpcHigh = (t(50) - t(10)) / 40;
  const resourcesPerVpc = (resources.get(50)! - resources.get(10)!) / 40;
  console.log(`\ncost per added VPC: ${perVpcLow.toFixed(1)} ms (1→10), ${perVpcHigh.toFixed(1)} ms (10→50); `
    + `ratio ${(perVpcHigh / perVpcLow).toFixed(2)} (1.00 = linear); ${resourcesPerVpc} resources per VPC`);
}
