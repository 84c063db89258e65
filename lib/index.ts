export * from './core/errors';
export * from './telemetry/telemetry-store';
export * from './backend/sensor';
export * from './backend/assessment-template';
export * from './backend/agent-backend';
