/*
 * The Control Tower proactive controls (`npm run test:control-tower`): cfn-guard over the fleet
 * and every example takes minutes of CPU, so it is its own run, not part of `npm test`.
 */
const base = require('../../jest.config');

/** @type {import('jest').Config} */
module.exports = {
  ...base,
  rootDir: '../..',
  roots: ['<rootDir>/test/control-tower'],
  testMatch: ['**/*.test.ts'],
  testPathIgnorePatterns: ['/node_modules/'],
  // One rule run over every template takes over a minute on the 2-core machine.
  testTimeout: 900000,
};
