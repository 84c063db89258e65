/*
 * Loopback stand-ins for what sits between an instance and the heartbeat handler:
 *  - InstanceMetadata: an instance metadata service (IMDSv2, IMDSv1 only when allowed) with an
 *    identity document and an instance profile whose credentials it hands out;
 *  - FrontDoor: API Gateway with IAM authorization. It verifies each request's SigV4 signature
 *    with an independent implementation (@smithy/signature-v4) against the sessions it knows
 *    (those the metadata service served), turns the request into the REST API proxy event API
 *    Gateway builds for an IAM-authorized caller (identity from the signing session), and
 *    invokes the handler it was given. On a private API it also takes the identity-document
 *    path (no authorization: the handler binds the request to the instance), with the TCP
 *    peer as the source address and the endpoint it was given as the VPC endpoint.
 */
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';

/** An instance role session as STS would issue it to EC2 for one instance. */
export interface InstanceSession {
  readonly accountId: string;
  readonly roleName: string;
  readonly roleId: string;
  readonly instanceId: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken: string;
}

/** A new session for an instance, with random secrets. */
export function instanceSession(accountId: string, instanceId: string, accessKeyId?: string, secretAccessKey?: string): InstanceSession {
  return {
    accountId, instanceId, roleName: 'FleetInstanceRole', roleId: 'AROAFLEETINSTANCEROLE1',
    accessKeyId: accessKeyId ?? `ASIA${crypto.randomBytes(8).toString('hex').toUpperCase()}`,
    secretAccessKey: secretAccessKey ?? crypto.randomBytes(30).toString('base64'),
    sessionToken: crypto.randomBytes(90).toString('base64'),
  };
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

async function listen(server: http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

async function close(server: http.Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** The instance metadata service of one instance. */
export class InstanceMetadata {
  /** Whether IMDSv1 (no token) is still allowed (HttpTokens=optional). */
  public allowV1 = false;
  /** Whether the instance has an instance profile (false: Default Host Management). */
  public role = true;
  /** The identity document's signature (base64, as IMDS serves it), if any. */
  public signature?: string;
  /** Every request: path, and whether it came with a valid token. */
  public readonly requests: Array<{ method: string; path: string; withToken: boolean }> = [];
  private readonly tokens = new Set<string>();
  private readonly server: http.Server;
  public url = '';

  constructor(public readonly session: InstanceSession, public readonly identity: Record<string, string>) {
    this.server = http.createServer((req, res) => this.answer(req, res));
  }

  public async start(): Promise<void> {
    this.url = `http://127.0.0.1:${await listen(this.server)}`;
  }

  public stop(): Promise<void> {
    return close(this.server);
  }

  /** The identity document as IMDS serves it: pretty-printed. */
  public get document(): string {
    return JSON.stringify(this.identity, null, 2);
  }

  private answer(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = req.url ?? '/';
    const send = (status: number, body = '') => {
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(body);
    };
    if (req.method === 'PUT' && url === '/latest/api/token') {
      const token = crypto.randomBytes(32).toString('base64');
      this.tokens.add(token);
      this.requests.push({ method: 'PUT', path: url, withToken: false });
      return send(200, token);
    }
    const withToken = this.tokens.has(String(req.headers['x-aws-ec2-metadata-token'] ?? ''));
    this.requests.push({ method: req.method ?? '', path: url, withToken });
    if (!withToken && !this.allowV1) return send(401);
    const role = '/latest/meta-data/iam/security-credentials/';
    const s = this.session;
    switch (url) {
      case '/latest/meta-data/instance-id': return send(200, s.instanceId);
      case '/latest/dynamic/instance-identity/document': return send(200, this.document);
      case '/latest/dynamic/instance-identity/signature': return this.signature ? send(200, this.signature) : send(404);
      case role: return this.role ? send(200, s.roleName) : send(404);
      case role + s.roleName: return !this.role ? send(404) : send(200, JSON.stringify({
        Code: 'Success', LastUpdated: new Date().toISOString(), Type: 'AWS-HMAC',
        AccessKeyId: s.accessKeyId, SecretAccessKey: s.secretAccessKey, Token: s.sessionToken,
        Expiration: new Date(Date.now() + 3600_000).toISOString(),
      }, null, 2));
      default: return send(404);
    }
  }
}

/** What the front door saw of one request. */
export interface FrontDoorRequest {
  readonly accessKeyId: string;
  readonly signedHeaders: string;
  /** 'ok' (passed to the handler), or why API Gateway refused it. */
  readonly verdict: string;
  readonly status: number;
  readonly body: string;
}

type Handler = (event: APIGatewayProxyEvent) => Promise<APIGatewayProxyResult>;

/** The identity-document method of a private API: its handler and the endpoint requests come through. */
export interface IdentityPath {
  readonly handler: Handler;
  /** The API's account. */
  readonly accountId: string;
  readonly vpceId: string;
}

/** API Gateway (REST API, stage `prod`, POST /v1/heartbeat with AWS_IAM authorization). */
export class FrontDoor {
  public readonly requests: FrontDoorRequest[] = [];
  /** Answers the next requests with this instead of calling the handler (a throttled API). */
  public readonly refuseNext: Array<{ status: number; retryAfter?: string }> = [];
  private readonly sessions = new Map<string, InstanceSession>();
  private readonly server: http.Server;
  public port = 0;

  constructor(private readonly region: string, private readonly handler: Handler, private readonly identityPath?: IdentityPath) {
    this.server = http.createServer((req, res) => {
      void readBody(req).then((body) => this.answer(req, body)).then(({ status, headers, body }) => {
        res.writeHead(status, headers);
        res.end(body);
      });
    });
  }

  public get url(): string {
    return `http://127.0.0.1:${this.port}/prod/v1/heartbeat`;
  }

  public get identityUrl(): string {
    return `http://127.0.0.1:${this.port}/prod/v1/identity-heartbeat`;
  }

  /** A session IAM knows (the instance profile's, as the metadata service serves it). */
  public allow(session: InstanceSession): void {
    this.sessions.set(session.accessKeyId, session);
  }

  public async start(): Promise<void> {
    this.port = await listen(this.server);
  }

  public stop(): Promise<void> {
    return close(this.server);
  }

  private async answer(req: http.IncomingMessage, body: Buffer): Promise<{ status: number; headers: Record<string, string>; body: string }> {
    const refuse = (status: number, verdict: string, message: string, accessKeyId = '', signedHeaders = '') => {
      this.requests.push({ accessKeyId, signedHeaders, verdict, status, body: body.toString('utf8') });
      return { status, headers: { 'content-type': 'application/json', 'x-amzn-errortype': verdict }, body: JSON.stringify({ message }) };
    };
    const [rawPath, rawQuery = ''] = (req.url ?? '/').split('?');
    if (this.identityPath && req.method === 'POST' && rawPath === '/prod/v1/identity-heartbeat') {
      const result = await this.identityPath.handler(this.event(req, rawPath, body, this.identityPath.accountId, {
        sourceIp: req.socket.remoteAddress ?? '', vpceId: this.identityPath.vpceId, userAgent: String(req.headers['user-agent'] ?? ''),
      }));
      this.requests.push({ accessKeyId: '', signedHeaders: '', verdict: 'ok', status: result.statusCode, body: body.toString('utf8') });
      return { status: result.statusCode, headers: Object.fromEntries(Object.entries(result.headers ?? {}).map(([k, v]) => [k, String(v)])), body: result.body };
    }
    if (req.method !== 'POST' || rawPath !== '/prod/v1/heartbeat') return refuse(403, 'MissingAuthenticationTokenException', 'Missing Authentication Token');
    const authorization = String(req.headers.authorization ?? '');
    const match = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$/.exec(authorization);
    if (!match) return refuse(403, 'IncompleteSignatureException', 'Authorization header requires a valid AWS4-HMAC-SHA256 signature');
    const [, accessKeyId, day, region, service, signedHeaders] = match;
    const session = this.sessions.get(accessKeyId);
    if (!session) return refuse(403, 'UnrecognizedClientException', 'The security token included in the request is invalid.', accessKeyId, signedHeaders);
    if (String(req.headers['x-amz-security-token'] ?? '') !== session.sessionToken || !signedHeaders.split(';').includes('x-amz-security-token')) {
      return refuse(403, 'UnrecognizedClientException', 'The security token included in the request is invalid.', accessKeyId, signedHeaders);
    }
    const amzDate = String(req.headers['x-amz-date'] ?? '');
    const signingDate = new Date(amzDate.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'));
    if (Number.isNaN(signingDate.getTime()) || !amzDate.startsWith(day) || Math.abs(Date.now() - signingDate.getTime()) > 5 * 60_000) {
      return refuse(403, 'InvalidSignatureException', 'Signature expired', accessKeyId, signedHeaders);
    }
    // Re-sign what the client says it signed, with the secret IAM knows, and compare.
    const headers: Record<string, string> = {};
    for (const name of signedHeaders.split(';')) {
      if (name === 'x-amz-date' || name === 'x-amz-security-token') continue; // the signer adds both
      headers[name] = String(req.headers[name] ?? '');
    }
    const signer = new SignatureV4({
      credentials: session, region: this.region, service: 'execute-api', sha256: Hash.bind(null, 'sha256'), applyChecksum: false,
    });
    const expected = await signer.sign({
      method: 'POST', protocol: 'http:', hostname: '127.0.0.1', port: this.port, path: rawPath,
      query: Object.fromEntries(new URLSearchParams(rawQuery)), headers, body,
    }, { signingDate });
    const expectedAuthorization = String(expected.headers.authorization ?? expected.headers.Authorization);
    if (region !== this.region || service !== 'execute-api' || expectedAuthorization !== authorization || !signedHeaders.split(';').includes('host')) {
      return refuse(403, 'InvalidSignatureException', 'The request signature we calculated does not match the signature you provided.', accessKeyId, signedHeaders);
    }
    const refusal = this.refuseNext.shift();
    if (refusal) {
      this.requests.push({ accessKeyId, signedHeaders, verdict: `throttled ${refusal.status}`, status: refusal.status, body: body.toString('utf8') });
      return {
        status: refusal.status,
        headers: { 'content-type': 'application/json', ...(refusal.retryAfter ? { 'retry-after': refusal.retryAfter } : {}) },
        body: JSON.stringify({ message: refusal.status === 429 ? 'Too Many Requests' : 'Service Unavailable' }),
      };
    }
    const result = await this.handler(this.event(req, rawPath, body, session.accountId, callerIdentity(session, req)));
    this.requests.push({ accessKeyId, signedHeaders, verdict: 'ok', status: result.statusCode, body: body.toString('utf8') });
    return { status: result.statusCode, headers: Object.fromEntries(Object.entries(result.headers ?? {}).map(([k, v]) => [k, String(v)])), body: result.body };
  }

  /** The proxy event API Gateway builds, with the caller's identity it established. */
  private event(req: http.IncomingMessage, rawPath: string, body: Buffer, apiAccount: string, identity: Record<string, string | null>): APIGatewayProxyEvent {
    const headers: Record<string, string> = {};
    const multiValueHeaders: Record<string, string[]> = {};
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const [name, value] = [req.rawHeaders[i], req.rawHeaders[i + 1]];
      headers[name] = value;
      (multiValueHeaders[name] ??= []).push(value);
    }
    const requestId = crypto.randomUUID();
    const resourcePath = rawPath.replace(/^\/prod/, '');
    return {
      resource: resourcePath,
      path: resourcePath,
      httpMethod: 'POST',
      headers,
      multiValueHeaders,
      queryStringParameters: null,
      multiValueQueryStringParameters: null,
      pathParameters: null,
      stageVariables: null,
      body: body.toString('utf8'),
      isBase64Encoded: false,
      requestContext: {
        accountId: apiAccount,
        apiId: 'frontdoor1',
        httpMethod: 'POST',
        path: rawPath,
        protocol: 'HTTP/1.1',
        requestId,
        extendedRequestId: requestId,
        requestTime: new Date().toUTCString(),
        requestTimeEpoch: Date.now(),
        resourceId: 'hb0001',
        resourcePath,
        stage: 'prod',
        domainName: `127.0.0.1:${this.port}`,
        domainPrefix: '127',
        authorizer: null,
        identity: {
          accessKey: null, accountId: null, apiKey: null, apiKeyId: null, caller: null, clientCert: null,
          cognitoAuthenticationProvider: null, cognitoAuthenticationType: null, cognitoIdentityId: null, cognitoIdentityPoolId: null,
          principalOrgId: null, sourceIp: '', user: null, userAgent: '', userArn: null,
          ...identity,
        },
      },
    } as unknown as APIGatewayProxyEvent;
  }
}

/** The identity API Gateway puts in the event for a caller IAM authorized with this session. */
function callerIdentity(session: InstanceSession, req: http.IncomingMessage): Record<string, string | null> {
  const user = `${session.roleId}:${session.instanceId}`;
  return {
    accessKey: session.accessKeyId,
    accountId: session.accountId,
    caller: user,
    sourceIp: req.socket.remoteAddress ?? '127.0.0.1',
    user,
    userAgent: String(req.headers['user-agent'] ?? ''),
    userArn: `arn:aws:sts::${session.accountId}:assumed-role/${session.roleName}/${session.instanceId}`,
  };
}
