import { Sensor } from '../../sensor';

/** One assessment template as the construct hands it to the handlers. */
export interface TemplateConfig {
  readonly name: string;
  readonly sensors: Sensor[];
  readonly durationSeconds: number;
  readonly targetTags: Record<string, string>;
}

/** What the construct tells the handlers, through environment variables. */
export interface BackendConfig {
  readonly tableName: string;
  readonly heartbeatIntervalSeconds: number;
  readonly cleanupAfterSeconds: number;
  readonly templates: TemplateConfig[];
  readonly exclusionTagKey: string;
  readonly telemetryBucket: string;
  readonly agentPrefix: string;
  readonly reportPrefix: string;
  readonly metricNamespace: string;
  readonly backendName: string;
  readonly accountId: string;
  readonly region: string;
  readonly tagCacheSeconds: number;
}

/** Names of the environment variables the construct sets. */
export const ENV = {
  tableName: 'REGISTRY_TABLE',
  heartbeatIntervalSeconds: 'HEARTBEAT_INTERVAL_SECONDS',
  cleanupAfterSeconds: 'CLEANUP_AFTER_SECONDS',
  templates: 'ASSESSMENT_TEMPLATES',
  exclusionTagKey: 'EXCLUSION_TAG_KEY',
  telemetryBucket: 'TELEMETRY_BUCKET',
  agentPrefix: 'TELEMETRY_AGENT_PREFIX',
  reportPrefix: 'COVERAGE_REPORT_PREFIX',
  metricNamespace: 'METRIC_NAMESPACE',
  backendName: 'BACKEND_NAME',
  accountId: 'BACKEND_ACCOUNT_ID',
  tagCacheSeconds: 'TAG_CACHE_SECONDS',
} as const;

/**
 * Reads the configuration from the environment. A missing variable is a deployment bug,
 * reported by name rather than discovered later as `undefined`.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): BackendConfig {
  const get = (name: string): string => {
    const value = env[name];
    if (value === undefined || value === '') throw new Error(`environment variable ${name} is not set`);
    return value;
  };
  const num = (name: string): number => {
    const value = Number(get(name));
    if (!Number.isFinite(value) || value <= 0) throw new Error(`environment variable ${name} is not a positive number`);
    return value;
  };
  return {
    tableName: get(ENV.tableName),
    heartbeatIntervalSeconds: num(ENV.heartbeatIntervalSeconds),
    cleanupAfterSeconds: num(ENV.cleanupAfterSeconds),
    templates: JSON.parse(get(ENV.templates)) as TemplateConfig[],
    exclusionTagKey: get(ENV.exclusionTagKey),
    telemetryBucket: get(ENV.telemetryBucket),
    agentPrefix: get(ENV.agentPrefix),
    reportPrefix: get(ENV.reportPrefix),
    metricNamespace: get(ENV.metricNamespace),
    backendName: get(ENV.backendName),
    accountId: get(ENV.accountId),
    region: get('AWS_REGION'),
    tagCacheSeconds: num(ENV.tagCacheSeconds),
  };
}
