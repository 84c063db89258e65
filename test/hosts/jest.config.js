/*
 * The real-host suite (`npm run test:hosts`, root only): real dpkg, rpm and systemd in
 * throwaway Debian roots, one at a time (each test boots a host in its own namespaces).
 */
const base = require('../../jest.config');

/** @type {import('jest').Config} */
module.exports = {
  ...base,
  rootDir: '../..',
  roots: ['<rootDir>/test/hosts'],
  testMatch: ['**/*.test.ts'],
  testPathIgnorePatterns: ['/node_modules/'],
  globalSetup: '<rootDir>/test/hosts/global-setup.ts',
  globalTeardown: '<rootDir>/test/hosts/global-teardown.ts',
  maxWorkers: 1,
  testTimeout: 180000,
};
