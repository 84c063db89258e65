export * from './core/errors';
export * from './telemetry/telemetry-store';
export * from './imds/imdsv2-enforcement';
export * from './imds/require-imdsv2';
