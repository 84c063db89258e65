/*
 * What EC2 says about an instance and an interface endpoint, for the identity-document path:
 * one DescribeInstances per instance and one DescribeVpcEndpoints per endpoint per TTL and
 * function container, whatever the request rate (answers, refusals included, are cached, so
 * replaying a document cannot turn into a flood of EC2 calls).
 */
import { DescribeInstancesCommand, DescribeVpcEndpointsCommand, EC2Client } from '@aws-sdk/client-ec2';

/** What the binding needs to know about an instance. */
export interface InstanceFacts {
  readonly found: boolean;
  readonly state?: string;
  readonly privateIp?: string;
  readonly vpcId?: string;
  readonly hasInstanceProfile?: boolean;
  readonly instanceType?: string;
  readonly imageId?: string;
}

/** Raised when EC2 could not answer (throttling, outage): a 503, never a refusal or a pass. */
export class Ec2UnavailableError extends Error {
  constructor(cause: unknown) {
    super(`EC2 could not be asked: ${cause instanceof Error ? cause.name : String(cause)}`);
    this.name = 'Ec2UnavailableError';
  }
}

const MAX_ENTRIES = 20_000;

class TtlCache<T> {
  private readonly entries = new Map<string, { until: number; value: T }>();
  constructor(private readonly ttlMs: number, private readonly now: () => number) {}
  public get(key: string): T | undefined {
    const entry = this.entries.get(key);
    if (entry && entry.until > this.now()) return entry.value;
    this.entries.delete(key);
    return undefined;
  }
  public set(key: string, value: T): void {
    // Maps iterate in insertion order: drop the oldest entry when full.
    if (this.entries.size >= MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value as string);
    this.entries.set(key, { until: this.now() + this.ttlMs, value });
  }
}

export class InstanceLookup {
  private readonly instances: TtlCache<InstanceFacts>;
  private readonly endpoints: TtlCache<string | null>;

  constructor(private readonly ec2: EC2Client, instanceTtlMs: number, now: () => number) {
    this.instances = new TtlCache(instanceTtlMs, now);
    // An endpoint never moves to another VPC; an hour bounds the memory of a deleted one.
    this.endpoints = new TtlCache(3_600_000, now);
  }

  public async instance(instanceId: string): Promise<InstanceFacts> {
    const cached = this.instances.get(instanceId);
    if (cached) return cached;
    let facts: InstanceFacts;
    try {
      const res = await this.ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }));
      const instance = res.Reservations?.flatMap((r) => r.Instances ?? []).find((i) => i.InstanceId === instanceId);
      facts = instance ? {
        found: true,
        state: instance.State?.Name,
        privateIp: instance.PrivateIpAddress,
        vpcId: instance.VpcId,
        hasInstanceProfile: instance.IamInstanceProfile !== undefined,
        instanceType: instance.InstanceType,
        imageId: instance.ImageId,
      } : { found: false };
    } catch (err) {
      if ((err as { name?: string }).name === 'InvalidInstanceID.NotFound' || (err as { name?: string }).name === 'InvalidInstanceID.Malformed') {
        facts = { found: false };
      } else {
        throw new Ec2UnavailableError(err);
      }
    }
    this.instances.set(instanceId, facts);
    return facts;
  }

  /** The VPC of an interface endpoint, or null when EC2 does not know it. */
  public async endpointVpc(vpceId: string): Promise<string | null> {
    const cached = this.endpoints.get(vpceId);
    if (cached !== undefined) return cached;
    let vpc: string | null;
    try {
      const res = await this.ec2.send(new DescribeVpcEndpointsCommand({ VpcEndpointIds: [vpceId] }));
      vpc = res.VpcEndpoints?.find((e) => e.VpcEndpointId === vpceId)?.VpcId ?? null;
    } catch (err) {
      if ((err as { name?: string }).name === 'InvalidVpcEndpointId.NotFound') vpc = null;
      else throw new Ec2UnavailableError(err);
    }
    this.endpoints.set(vpceId, vpc);
    return vpc;
  }
}
