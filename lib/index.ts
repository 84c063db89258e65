export * from './core/errors';
export * from './telemetry/telemetry-store';
