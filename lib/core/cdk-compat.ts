import * as cdk from 'aws-cdk-lib';
import type { Validations } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { IConstruct } from 'constructs';

/*
 * Fallbacks for the oldest aws-cdk-lib the library supports (the floor in package.json's
 * peerDependencies). Each one feature-detects what it needs, so that on the pinned (newest)
 * aws-cdk-lib it does nothing and the templates are exactly what that version makes; on an
 * older one it produces the same template by other means.
 *
 * Each names the aws-cdk-lib release that made it unnecessary: remove it once the floor
 * reaches that release. The README's "Supported versions" section lists the same table, and
 * `npm run test:compat` synthesizes every construct on the floor to prove them.
 */

/**
 * `lambda.Runtime.NODEJS_24_X`, which aws-cdk-lib has had since 2.224.0.
 *
 * Before, the same runtime by name: a template names only `nodejs24.x`, and Lambda accepts
 * it whatever aws-cdk-lib made the template.
 */
export function nodejs24Runtime(): lambda.Runtime {
  const known = (lambda.Runtime as { NODEJS_24_X?: lambda.Runtime }).NODEJS_24_X;
  return known ?? new lambda.Runtime('nodejs24.x', lambda.RuntimeFamily.NODEJS, { supportsInlineCode: true });
}

/**
 * `Validations.of(scope)`, which aws-cdk-lib has had since 2.252.0; `undefined` before.
 *
 * Nothing is lost without it: its only reader here is cdk-nag 3, which needs aws-cdk-lib
 * 2.257.0 or newer, and cdk-nag 2 reads the resource metadata written beside it.
 */
export function validationsOf(scope: IConstruct): Validations | undefined {
  const api = (cdk as { Validations?: typeof Validations }).Validations;
  return api?.of(scope);
}

/**
 * CloudFormation resource types whose L1 class in older aws-cdk-lib releases has no tag
 * support (`Tags` silently skips them there), although CloudFormation takes `Tags` on them,
 * with the aws-cdk-lib release whose L1 class is taggable.
 */
const TAGGABLE_SINCE: Readonly<Record<string, string>> = {
  'AWS::Events::Rule': '2.214.0',
  'AWS::CloudWatch::Dashboard': '2.257.0',
  'AWS::SSM::Association': '2.260.0',
};

/**
 * Adds a tag to every taggable resource in `scope`, as `Tags.of(scope).add()` does, and also
 * to the resources whose L1 class in an older aws-cdk-lib cannot be tagged (`TAGGABLE_SINCE`),
 * so the library's own tags are on the same resources whatever aws-cdk-lib synthesizes them.
 *
 * Where aws-cdk-lib can tag a resource, the fallback leaves it to `Tags`, so templates on
 * newer releases are exactly what `Tags` makes.
 */
export function tagEverywhere(scope: IConstruct, key: string, value: string): void {
  cdk.Tags.of(scope).add(key, value);
  cdk.Aspects.of(scope).add(new UntaggableL1Tag(key, value));
}

/** The tags the fallback writes per resource, rendered once after every aspect has run. */
const fallbackTags = new WeakMap<cdk.CfnResource, Map<string, string>>();

class UntaggableL1Tag implements cdk.IAspect {
  constructor(private readonly key: string, private readonly value: string) {}

  public visit(node: IConstruct): void {
    if (!cdk.CfnResource.isCfnResource(node) || !TAGGABLE_SINCE[node.cfnResourceType]
      || cdk.TagManager.isTaggable(node) || cdk.TagManager.isTaggableV2(node)) {
      return;
    }
    let tags = fallbackTags.get(node);
    if (!tags) {
      const collected = new Map<string, string>();
      fallbackTags.set(node, collected);
      // The same shape and order as aws-cdk-lib's TagManager renders: a list sorted by key.
      node.addPropertyOverride('Tags', cdk.Lazy.any({
        produce: () => [...collected.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([Key, Value]) => ({ Key, Value })),
      }));
      tags = collected;
    }
    tags.set(this.key, this.value);
  }
}
