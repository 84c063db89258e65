import * as fs from 'node:fs';
import * as path from 'node:path';
import { CfnGuardValidator } from '@cdklabs/cdk-validator-cfnguard';
import { CfnResource, Stack, Stage } from 'aws-cdk-lib';
import * as cxapi from 'aws-cdk-lib/cx-api';

/** One Control Tower proactive control that fails on one resource: `CT.KMS.PR.3 Stack/Fleet/Telemetry/Key/Resource`. */
export type ControlFinding = string;

const RULES_DIR = path.join(path.dirname(require.resolve('@cdklabs/cdk-validator-cfnguard/package.json')), 'rules', 'control-tower', 'cfn-guard');

/** Every rule file of the bundled controls, by name (`ct-s3-pr-1`), with the resource types it names. */
function ruleFiles(dir = RULES_DIR): { name: string; types: string[] }[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) return ruleFiles(file);
    const types = [...new Set(fs.readFileSync(file, 'utf8').match(/AWS::[A-Za-z0-9]+::[A-Za-z0-9]+/g) ?? [])];
    return [{ name: path.parse(entry.name).name, types }];
  });
}

/** The CloudFormation templates of an assembly and its nested ones (stages), and templates staged as assets (StackSet members). */
function templateFiles(assembly: cxapi.CloudAssembly): string[] {
  const own = fs.readdirSync(assembly.directory)
    .filter((f) => f.endsWith('.template.json') || /^asset\..*\.json$/.test(f))
    .map((f) => path.join(assembly.directory, f))
    .filter((f) => fs.statSync(f).isFile() && 'Resources' in JSON.parse(fs.readFileSync(f, 'utf8')));
  return [...own, ...assembly.nestedAssemblies.flatMap((nested) => templateFiles(nested.nestedAssembly))];
}

/** Logical id → construct path of every CloudFormation resource under `stage`, per template file name. */
function constructPaths(stage: Stage): Map<string, Map<string, string>> {
  const byTemplate = new Map<string, Map<string, string>>();
  for (const node of stage.node.findAll()) {
    if (!CfnResource.isCfnResource(node)) continue;
    const stack = Stack.of(node);
    const ids = byTemplate.get(stack.templateFile) ?? new Map<string, string>();
    ids.set(stack.resolve(node.logicalId) as string, node.node.path);
    byTemplate.set(stack.templateFile, ids);
  }
  return byTemplate;
}

/**
 * Synthesizes each app and runs the Control Tower proactive controls of
 * `@cdklabs/cdk-validator-cfnguard` over every template they produced, the way CDK's policy
 * validation calls the plugin (`validate({ templatePaths })`). Returns, per app, its failures
 * as `<control id> <construct path>` (or `<template>:<logical id>` for a template staged as
 * an asset), sorted.
 *
 * The plugin is called directly rather than through `Validations.of(app).addPlugins()` so
 * that nothing is printed and one cfn-guard run covers every app: cfn-guard loads every rule
 * file on each run, about a minute for the full set on a busy 2-core machine. For the same
 * reason rule files about resource types no template contains (which cannot fail) are skipped.
 */
export function controlTowerFindings(apps: Record<string, Stage>): Record<string, ControlFinding[]> {
  const synthesized = Object.entries(apps).map(([name, app]) => {
    const assembly = app.synth();
    return { name, app, directory: assembly.directory, templates: templateFiles(assembly), paths: constructPaths(app) };
  });
  const templates = synthesized.flatMap((s) => s.templates);
  const present = new Set(templates.flatMap((file) =>
    Object.values(JSON.parse(fs.readFileSync(file, 'utf8')).Resources as Record<string, { Type: string }>).map((r) => r.Type)));
  const disabledRules = ruleFiles().filter((rule) => rule.types.length > 0 && !rule.types.some((t) => present.has(t))).map((rule) => rule.name);
  const report = new CfnGuardValidator({ disabledRules, maxBuffer: 512 * 1024 * 1024 })
    .validate({ templatePaths: templates, appConstruct: synthesized[0].app } as never);

  const findings: Record<string, Set<string>> = Object.fromEntries(synthesized.map((s) => [s.name, new Set<string>()]));
  for (const violation of report.violations) {
    const control = /\[(CT\.[A-Z0-9]+\.PR\.\d+)\]/.exec(violation.description)?.[1] ?? violation.ruleName;
    for (const resource of violation.violatingResources) {
      const owner = synthesized.find((s) => resource.templatePath.startsWith(s.directory + path.sep));
      if (!owner) throw new Error(`a finding in ${resource.templatePath}, which no app produced`);
      const template = path.basename(resource.templatePath);
      findings[owner.name].add(`${control} ${owner.paths.get(template)?.get(resource.resourceLogicalId) ?? `${template}:${resource.resourceLogicalId}`}`);
    }
  }
  expect(report.success).toBe(Object.values(findings).every((f) => f.size === 0));
  return Object.fromEntries(Object.entries(findings).map(([name, f]) => [name, [...f].sort()]));
}
