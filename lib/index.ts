export * from './core/errors';
export * from './telemetry/telemetry-store';
export * from './install/agent-package';
export * from './install/agent-install-document';
