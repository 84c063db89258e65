export * from './core/errors';
export * from './telemetry/telemetry-store';
export * from './nag/agent-fleet-checks';
