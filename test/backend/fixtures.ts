import type { APIGatewayProxyEvent } from 'aws-lambda';
import { clock } from '../../lib/backend/handler/shared/clock';
import { metricSink } from '../../lib/backend/handler/shared/emf';

export const ACCOUNT = '111122223333';
export const REGION = 'eu-west-1';
export const INSTANCE = 'i-0123456789abcdef0';
export const ROLE_ID = 'AROAEXAMPLEROLEID1234';
/** 2026-03-01T12:00:00Z */
export const NOW = Date.UTC(2026, 2, 1, 12, 0, 0);

export const TEMPLATES = [
  { name: 'baseline', sensors: ['PACKAGE_INVENTORY'], durationSeconds: 3600, targetTags: {} },
  { name: 'prod-runtime', sensors: ['PROCESS_EVENTS', 'NETWORK_EVENTS'], durationSeconds: 3600, targetTags: { Environment: 'prod' } },
  { name: 'pci', sensors: ['FILE_INTEGRITY'], durationSeconds: 7200, targetTags: { Environment: 'prod', Scope: 'pci' } },
];

/** The environment the construct gives the handlers. */
export function backendEnv(overrides: Record<string, string> = {}): Record<string, string> {
  return {
    AWS_REGION: REGION,
    REGISTRY_TABLE: 'registry',
    HEARTBEAT_INTERVAL_SECONDS: '600',
    CLEANUP_AFTER_SECONDS: String(30 * 86400),
    ASSESSMENT_TEMPLATES: JSON.stringify(TEMPLATES),
    EXCLUSION_TAG_KEY: 'SecurityAgentManaged',
    TELEMETRY_BUCKET: 'telemetry-bucket',
    TELEMETRY_AGENT_PREFIX: 'agents/',
    COVERAGE_REPORT_PREFIX: 'reports/coverage/',
    METRIC_NAMESPACE: 'CdkAgentFleet',
    BACKEND_NAME: 'Stack/Backend',
    BACKEND_ACCOUNT_ID: ACCOUNT,
    TAG_CACHE_SECONDS: '300',
    ...overrides,
  };
}

export function applyEnv(env: Record<string, string>): void {
  Object.assign(process.env, env);
}

export function validBody(overrides: Record<string, unknown> = {}): Record<string, any> {
  return {
    agentVersion: '1.4.2',
    imdsVersion: 'v2',
    identityDocument: {
      accountId: ACCOUNT,
      region: REGION,
      availabilityZone: 'eu-west-1a',
      instanceId: INSTANCE,
      instanceType: 'm7g.large',
      imageId: 'ami-0abcdef1234567890',
      architecture: 'arm64',
    },
    sensors: { PACKAGE_INVENTORY: { state: 'RUNNING', runId: 'baseline-20260301T1100Z-0123456789ab' } },
    ...overrides,
  };
}

/** An API Gateway proxy event as IAM authorization leaves it for an instance role session. */
export function heartbeatEvent(
  body: unknown,
  caller: { account?: string; instanceId?: string; userArn?: string | null; user?: string | null } = {},
  options: { raw?: boolean; base64?: boolean } = {},
): APIGatewayProxyEvent {
  const account = caller.account ?? ACCOUNT;
  const instanceId = caller.instanceId ?? INSTANCE;
  const text = options.raw ? String(body) : JSON.stringify(body);
  return {
    body: options.base64 ? Buffer.from(text, 'utf8').toString('base64') : text,
    isBase64Encoded: options.base64 ?? false,
    httpMethod: 'POST',
    path: '/v1/heartbeat',
    resource: '/v1/heartbeat',
    headers: { 'content-type': 'application/json' },
    multiValueHeaders: {},
    queryStringParameters: null,
    multiValueQueryStringParameters: null,
    pathParameters: null,
    stageVariables: null,
    requestContext: {
      requestId: 'req-1',
      identity: {
        userArn: caller.userArn === undefined ? `arn:aws:sts::${account}:assumed-role/FleetInstanceRole/${instanceId}` : caller.userArn,
        user: caller.user === undefined ? `${ROLE_ID}:${instanceId}` : caller.user,
        caller: `${ROLE_ID}:${instanceId}`,
        accountId: account,
      },
    },
  } as unknown as APIGatewayProxyEvent;
}

/**
 * For a scheduled handler's test file: before each test, the backend's environment, the
 * clock at NOW, and the embedded-metric lines captured (console.log silenced). Returns the
 * captured metrics, emptied before each test.
 */
export function capturedHandlerMetrics(): any[] {
  const metrics: any[] = [];
  beforeEach(() => {
    applyEnv(backendEnv());
    clock.now = () => NOW;
    metrics.length = 0;
    metricSink.write = (line) => { metrics.push(JSON.parse(line)); };
    jest.spyOn(console, 'log').mockImplementation(() => undefined);
  });
  afterEach(() => jest.restoreAllMocks());
  return metrics;
}
