/*
 * What the activation host tests share: the rendered script with an activation, and a host
 * whose metadata service serves an instance role's credentials, whose secrets stand-in holds
 * the given values, and which has a fake vendor tool in place.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Stack } from 'aws-cdk-lib';
import { Host, TEST_SETTINGS } from './host';
import { PACKAGE_HOST } from './roots';
import { AgentActivation, AgentPackage } from '../../lib';
import { activationId } from '../../lib/install/activation-script';
import { renderLinuxScript } from '../../lib/install/install-scripts';
import { resolver } from '../helpers/iam-eval';

export const ENV = { account: '111122223333', region: 'us-east-1' };
/** What the test IMDS serves as the instance role's credentials (routes/secrets.js verifies with them). */
export const CREDENTIALS = { Code: 'Success', Type: 'AWS-HMAC', AccessKeyId: 'ASIAHOSTTEST', SecretAccessKey: 'host-test-secret-key', Token: 'host-test-session-token' };

/** The rendered script, its tokens (the partition in parameter ARNs) resolved as CloudFormation would. */
export function activationScript(packages: AgentPackage[], stack: Stack, activation: AgentActivation): string[] {
  const { resolve } = resolver(ENV)({ Resources: {} });
  const lines = renderLinuxScript(packages, { ...TEST_SETTINGS, awsEndpoint: `https://${PACKAGE_HOST}` }, undefined, { id: activationId(stack, activation), activation });
  return lines.map((line) => resolve(stack.resolve(line)));
}

/** A booted host with the role's credentials, `secrets` (by ARN) in the stand-in, and `tool` at `toolPath`. */
export async function bootWithActivation(secrets: Record<string, { value: string; version: string }>, toolPath: string, tool: string): Promise<Host> {
  const booted = await Host.boot();
  fs.writeFileSync(path.join(booted.share, 'role'), 'agent-instance-role');
  fs.writeFileSync(path.join(booted.share, 'credentials.json'), JSON.stringify(CREDENTIALS));
  fs.writeFileSync(path.join(booted.share, 'secrets.json'), JSON.stringify(secrets));
  const file = path.join(booted.share, 'fake-tool');
  fs.writeFileSync(file, tool);
  booted.put(file, toolPath);
  booted.exec(`chmod 755 ${toolPath}`);
  return booted;
}
