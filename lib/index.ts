export * from './core/errors';
export * from './telemetry/telemetry-store';
export * from './nag/agent-fleet-checks';
export * from './backend/sensor';
export * from './backend/assessment-template';
export * from './backend/agent-backend';
