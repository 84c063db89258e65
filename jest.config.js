/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // The real-host suite needs root and its own setup: `npm run test:hosts`. The Control Tower
  // controls (cfn-guard, minutes of CPU) are their own step: `npm run test:control-tower`.
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/test/hosts/', '<rootDir>/test/control-tower/'],
  // Type checking is `npm run typecheck`; swc only strips types, which keeps the suite fast.
  transform: {
    '^.+\\.ts$': ['@swc/jest', { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'commonjs' } }],
  },
  moduleFileExtensions: ['ts', 'js', 'json'],
  testTimeout: 60000,
  // The suite is CPU-bound (synths, nag packs): one worker per core. Jest's default leaves one
  // core idle, which on a 2-core machine halves the speed.
  maxWorkers: '100%',
  setupFiles: ['<rootDir>/test/setup-env.ts'],
  // Each synth writes its assembly to a temporary dir that aws-cdk-lib removes at process exit;
  // a worker that had synthesized hundreds took longer to exit than jest waits, was killed, and
  // left gigabytes in the temp dir. aws-cdk-lib's helper removes them after each test file.
  setupFilesAfterEnv: ['aws-cdk-lib/testhelpers/jest-autoclean'],
};
