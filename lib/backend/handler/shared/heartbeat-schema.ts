/*
 * The closed schema of a heartbeat body, written in a subset of JSON Schema (draft 4) so it
 * can be published to agent developers as is; `validate.ts` applies it.
 *
 * API Gateway's own model validation only checks that the body is a JSON object: its
 * validation messages cannot be returned as well-formed JSON, and the agent deserves the
 * precise reason the handler gives.
 */
import { Sensor } from '../../sensor';

const ALL_SENSORS = Object.values(Sensor);

/** One node of the schema subset: objects with closed properties and constrained strings. */
export interface SchemaNode {
  readonly type: 'object' | 'string';
  readonly description?: string;
  readonly properties?: { readonly [name: string]: SchemaNode };
  readonly required?: readonly string[];
  readonly additionalProperties?: false;
  readonly enum?: readonly string[];
  readonly pattern?: string;
  readonly minLength?: number;
  readonly maxLength?: number;
}

/** Largest body the backend accepts, in bytes of UTF-8. */
export const MAX_HEARTBEAT_BYTES = 16 * 1024;

/** The states an agent reports for each sensor. */
export const SENSOR_STATES = ['RUNNING', 'IDLE', 'FAILED'] as const;

/**
 * The states of the agent's own service, as the host sees it (systemd, the Windows service
 * manager). Anything but RUNNING makes a heartbeating instance `agentUnhealthy` in the
 * coverage report: the host is alive, the agent is not working.
 */
export const AGENT_SERVICE_STATES = ['RUNNING', 'STOPPED', 'FAILED', 'NOT_INSTALLED'] as const;

const text = (pattern: string, maxLength: number, description: string): SchemaNode =>
  ({ type: 'string', pattern, minLength: 1, maxLength, description });

const sensorState: SchemaNode = {
  type: 'object',
  additionalProperties: false,
  required: ['state'],
  properties: {
    state: { type: 'string', enum: SENSOR_STATES, description: 'What the sensor is doing now' },
    runId: text('^[A-Za-z0-9-]+$', 80, 'The assessment run the sensor works for'),
    message: { type: 'string', pattern: '^[^\\u0000-\\u001f]*$', maxLength: 256, description: 'Why the sensor failed, for humans' },
  },
};

/** The heartbeat body. Every object is closed: an unknown field is an error. */
export const HEARTBEAT_SCHEMA: SchemaNode = {
  type: 'object',
  additionalProperties: false,
  required: ['agentVersion', 'imdsVersion', 'identityDocument', 'sensors'],
  properties: {
    agentVersion: text('^[0-9A-Za-z][0-9A-Za-z.+_-]*$', 64, 'Version of the agent'),
    imdsVersion: { type: 'string', enum: ['v1', 'v2'], description: 'The IMDS version the agent used to read the identity document' },
    identityDocument: {
      type: 'object',
      additionalProperties: false,
      description: 'Fields of the instance identity document, as IMDS returned them',
      required: ['accountId', 'region', 'availabilityZone', 'instanceId', 'instanceType', 'imageId'],
      properties: {
        accountId: text('^[0-9]{12}$', 12, 'AWS account id'),
        region: text('^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$', 32, 'AWS Region'),
        availabilityZone: text('^[a-z]{2}(-[a-z0-9]+)+[a-z]?$', 40, 'Availability Zone'),
        instanceId: text('^i-([0-9a-f]{8}|[0-9a-f]{17})$', 19, 'EC2 instance id'),
        instanceType: text('^[a-z0-9-]+\\.[a-z0-9-]+$', 32, 'EC2 instance type'),
        imageId: text('^ami-([0-9a-f]{8}|[0-9a-f]{17})$', 21, 'AMI id'),
        architecture: { type: 'string', enum: ['x86_64', 'arm64', 'i386'], description: 'CPU architecture' },
      },
    },
    agentService: {
      type: 'object',
      additionalProperties: false,
      description: 'The agent\'s service as the host sees it; optional for clients that cannot tell',
      required: ['state'],
      properties: {
        state: { type: 'string', enum: AGENT_SERVICE_STATES, description: 'Whether the agent\'s service runs' },
        message: { type: 'string', pattern: '^[^\\u0000-\\u001f]*$', maxLength: 256, description: 'Why it does not, for humans' },
      },
    },
    sensors: {
      type: 'object',
      additionalProperties: false,
      description: 'State of each sensor the agent runs, keyed by sensor',
      properties: Object.fromEntries(ALL_SENSORS.map((sensor) => [sensor, sensorState])),
    },
  },
};
