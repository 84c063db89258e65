export * from './core/errors';
export * from './telemetry/telemetry-store';
export * from './install/agent-package';
export * from './install/agent-install-document';
export * from './targeting/auto-configuration-mode';
export * from './targeting/association-schedule';
export * from './targeting/agent-auto-configuration';
export * from './network/agent-vpc-endpoints';
