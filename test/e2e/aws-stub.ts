/*
 * A loopback stand-in for the AWS APIs no local engine exists for: EC2 (query protocol,
 * XML answers, in EC2's own shape so the SDK's real parsing is exercised), SSM and EventBridge (JSON 1.1). It answers the few calls the backend
 * handlers make from a fleet the test describes, and records every PutEvents entry.
 */
import { createServer, IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** An EC2 instance as the stub reports it. */
export interface StubInstance {
  readonly instanceId: string;
  readonly tags: Record<string, string>;
  readonly ssmOnline: boolean;
  /** @default 'running' */
  readonly state?: string;
  /** What the identity-document path binds a request to (reported only when given). */
  readonly privateIp?: string;
  readonly vpcId?: string;
  readonly instanceType?: string;
  readonly imageId?: string;
  /** Whether it has an instance profile. */
  readonly instanceProfile?: boolean;
}

/** An interface VPC endpoint as DescribeVpcEndpoints reports it. */
export interface StubEndpoint {
  readonly vpcEndpointId: string;
  readonly vpcId: string;
}

const xml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const tagSet = (tags: Record<string, string>) =>
  Object.entries(tags).map(([k, v]) => `<item><key>${xml(k)}</key><value>${xml(v)}</value></item>`).join('');

function body(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export class AwsStub {
  /** The fleet EC2 and SSM describe; tests change it between steps. */
  public instances: StubInstance[] = [];
  /** The VPC endpoints EC2 describes. */
  public endpoints: StubEndpoint[] = [];
  /** Every entry put on a bus, in order. */
  public readonly putEvents: Array<Record<string, unknown>> = [];
  /** Every call, as `<service>:<operation>`. */
  public readonly calls: string[] = [];
  private readonly server: Server;

  constructor() {
    this.server = createServer((req, res) => {
      void body(req).then((text) => {
        const target = String(req.headers['x-amz-target'] ?? '');
        if (target) {
          const [service, operation] = target.split('.');
          this.calls.push(`${service}:${operation}`);
          res.setHeader('content-type', 'application/x-amz-json-1.1');
          res.end(JSON.stringify(this.json(service, operation, JSON.parse(text || '{}'))));
          return;
        }
        const action = new URLSearchParams(text).get('Action') ?? '';
        this.calls.push(`ec2:${action}`);
        res.setHeader('content-type', 'text/xml;charset=UTF-8');
        res.end(this.ec2(action));
      }).catch((err: unknown) => {
        res.statusCode = 500;
        res.end(String(err));
      });
    });
  }

  public async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  public stop(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private ec2(action: string): string {
    const ns = 'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"';
    if (action === 'DescribeTags') {
      const items = this.instances.flatMap((i) => Object.entries(i.tags).map(([k, v]) =>
        `<item><resourceId>${i.instanceId}</resourceId><resourceType>instance</resourceType><key>${xml(k)}</key><value>${xml(v)}</value></item>`));
      return `<DescribeTagsResponse ${ns}><requestId>stub</requestId><tagSet>${items.join('')}</tagSet></DescribeTagsResponse>`;
    }
    if (action === 'DescribeInstances') {
      const field = (name: string, value: string | undefined) => (value === undefined ? '' : `<${name}>${xml(value)}</${name}>`);
      const items = this.instances.map((i) => `<item><instanceId>${i.instanceId}</instanceId>${field('imageId', i.imageId)}`
        + `<instanceState><code>16</code><name>${i.state ?? 'running'}</name></instanceState>${field('instanceType', i.instanceType)}`
        + `${field('privateIpAddress', i.privateIp)}${field('vpcId', i.vpcId)}`
        + (i.instanceProfile ? '<iamInstanceProfile><arn>arn:aws:iam::123456789012:instance-profile/fleet</arn><id>AIPAEXAMPLE</id></iamInstanceProfile>' : '')
        + `<tagSet>${tagSet(i.tags)}</tagSet><metadataOptions><httpTokens>required</httpTokens><httpEndpoint>enabled</httpEndpoint></metadataOptions></item>`);
      return `<DescribeInstancesResponse ${ns}><requestId>stub</requestId><reservationSet><item><reservationId>r-0123456789abcdef0</reservationId>`
        + `<instancesSet>${items.join('')}</instancesSet></item></reservationSet></DescribeInstancesResponse>`;
    }
    if (action === 'DescribeVpcEndpoints') {
      const items = this.endpoints.map((e) => `<item><vpcEndpointId>${e.vpcEndpointId}</vpcEndpointId><vpcEndpointType>Interface</vpcEndpointType><vpcId>${e.vpcId}</vpcId></item>`);
      return `<DescribeVpcEndpointsResponse ${ns}><requestId>stub</requestId><vpcEndpointSet>${items.join('')}</vpcEndpointSet></DescribeVpcEndpointsResponse>`;
    }
    throw new Error(`EC2 ${action} is not stubbed`);
  }

  private json(service: string, operation: string, input: any): unknown {
    if (service === 'AmazonSSM' && operation === 'DescribeInstanceInformation') {
      return { InstanceInformationList: this.instances.map((i) => ({ InstanceId: i.instanceId, PingStatus: i.ssmOnline ? 'Online' : 'ConnectionLost' })) };
    }
    if (service === 'AWSEvents' && operation === 'PutEvents') {
      const entries = input.Entries as Array<Record<string, unknown>>;
      this.putEvents.push(...entries);
      return { FailedEntryCount: 0, Entries: entries.map((_, n) => ({ EventId: `stub-${this.putEvents.length - entries.length + n}` })) };
    }
    throw new Error(`${service} ${operation} is not stubbed`);
  }
}
