/*
 * The contract of the coverage change event: one per instance whose coverage category
 * changed between two coverage reports, on the account's default EventBridge bus, the way
 * GuardDuty reports Runtime Monitoring coverage changes. Shared by the construct (IAM
 * conditions, README) and the coverage report handler; no SDK imports here.
 */

/** `source` of every event (custom sources may not start with `aws.`). */
export const COVERAGE_EVENT_SOURCE = 'cdk-agent-fleet';
/** `detail-type` of a coverage change. */
export const COVERAGE_CHANGE_DETAIL_TYPE = 'Agent Coverage Status Change';

/** The categories of the coverage report; exactly one per instance. */
export const CATEGORIES = ['covered', 'excluded', 'agentUnhealthy', 'agentInactive', 'notSsmManaged', 'agentMissing'] as const;
export type Category = typeof CATEGORIES[number];

/** Categories in which the instance's agent does its job (or is not meant to). */
export const HEALTHY_CATEGORIES: readonly Category[] = ['covered', 'excluded'];

/** The `detail` of a coverage change event. */
export interface CoverageChangeDetail {
  readonly schemaVersion: '1';
  readonly backend: string;
  readonly accountId: string;
  readonly region: string;
  readonly instanceId: string;
  /** null when the instance was not in the previous report (launched since). */
  readonly previousCategory: Category | null;
  readonly currentCategory: Category;
  /** True when the current category is covered or excluded. */
  readonly healthy: boolean;
  /** What the agent's service reported at its last heartbeat, when there is one. */
  readonly agentServiceState: string | null;
  readonly previousReportAt: string;
  readonly reportAt: string;
  /** Key of the report in the telemetry store that saw the change. */
  readonly reportKey: string;
}

/** The JSON Schema (draft-07) of `detail`. */
export const COVERAGE_CHANGE_DETAIL_SCHEMA = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://github.com/cdk-agent-fleet/cdk-agent-fleet/schemas/agent-coverage-status-change-1.json',
  title: 'Agent Coverage Status Change (detail)',
  type: 'object',
  additionalProperties: false,
  required: ['schemaVersion', 'backend', 'accountId', 'region', 'instanceId', 'previousCategory', 'currentCategory', 'healthy',
    'agentServiceState', 'previousReportAt', 'reportAt', 'reportKey'],
  properties: {
    schemaVersion: { const: '1' },
    backend: { type: 'string', minLength: 1, description: 'Construct path of the AgentBackend that wrote the report' },
    accountId: { type: 'string', pattern: '^[0-9]{12}$' },
    region: { type: 'string', pattern: '^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$' },
    instanceId: { type: 'string', pattern: '^i-([0-9a-f]{8}|[0-9a-f]{17})$' },
    previousCategory: { oneOf: [{ type: 'null' }, { enum: [...CATEGORIES] }], description: 'null: not in the previous report' },
    currentCategory: { enum: [...CATEGORIES] },
    healthy: { type: 'boolean', description: 'currentCategory is covered or excluded' },
    agentServiceState: { type: ['string', 'null'], enum: ['RUNNING', 'STOPPED', 'FAILED', 'NOT_INSTALLED', 'UNREPORTED', null] },
    previousReportAt: { type: 'string', format: 'date-time' },
    reportAt: { type: 'string', format: 'date-time' },
    reportKey: { type: 'string', minLength: 1 },
  },
} as const;
