import { CfnResource, Stack } from 'aws-cdk-lib';
import { CfnAutoScalingGroup } from 'aws-cdk-lib/aws-autoscaling';
import { CfnInstance, CfnLaunchTemplate } from 'aws-cdk-lib/aws-ec2';
import { CfnInstanceProfile, CfnRole } from 'aws-cdk-lib/aws-iam';
import { NagRules } from 'cdk-nag';

/*
 * What the AgentFleetChecks rules share: following references between resources of one
 * stack (instance -> launch template -> instance profile -> role, subnet -> VPC) and
 * reading the effective metadata options of whatever launches instances.
 */

/**
 * Template JSON after resolution: its shape is whatever CloudFormation allows there, so the
 * rules read it field by field and treat anything unexpected as "not set".
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- resolved CloudFormation JSON has no static type
export type CfnJson = any;

/** The value, resolved to plain CloudFormation (tokens become intrinsics). */
export function resolved(node: CfnResource, value: unknown): CfnJson {
  return Stack.of(node).resolve(value);
}

/** The logical id a reference points to, or the plain value (a name) if it is not a reference. */
export function referenced(node: CfnResource, value: unknown): unknown {
  return NagRules.resolveResourceFromIntrinsic(node, value);
}

/** Every CloudFormation resource of the stack that `node` is in, of one L1 type. */
export function resourcesOfType<T extends CfnResource>(node: CfnResource, type: abstract new (...args: never[]) => T): T[] {
  return Stack.of(node).node.findAll().filter((c): c is T => c instanceof type);
}

/** True when `candidate` is the resource that `reference` (a Ref/GetAtt or a physical name) names. */
export function isReferenceTo(node: CfnResource, reference: unknown, candidate: CfnResource, physicalName?: unknown): boolean {
  if (reference === undefined) return false;
  const target = referenced(node, reference);
  const candidateId = referenced(candidate, candidate.ref);
  if (target === candidateId) return true;
  return physicalName !== undefined && JSON.stringify(resolved(node, reference)) === JSON.stringify(resolved(candidate, physicalName));
}

/** The launch template of this stack a `{ launchTemplateId | launchTemplateName }` spec names. */
export function findLaunchTemplate(node: CfnResource, spec: unknown): CfnLaunchTemplate | undefined {
  if (!spec) return undefined;
  const s = resolved(node, spec);
  return resourcesOfType(node, CfnLaunchTemplate).find((lt) =>
    isReferenceTo(node, s.launchTemplateId ?? s.LaunchTemplateId, lt)
    || isReferenceTo(node, s.launchTemplateName ?? s.LaunchTemplateName, lt, lt.launchTemplateName));
}

/** Instance metadata options as the rules need them; undefined fields were not set. */
export interface EffectiveMetadataOptions {
  readonly httpTokens?: string;
  readonly httpPutResponseHopLimit?: number;
  readonly instanceMetadataTags?: string;
  readonly httpEndpoint?: string;
}

/** Which resources launch instances, and so must carry metadata options. */
export function launchesInstances(node: CfnResource): boolean {
  return node instanceof CfnInstance || node instanceof CfnLaunchTemplate || node instanceof CfnAutoScalingGroup;
}

/**
 * The metadata options instances launched by `node` get, as far as the template says.
 * Instance settings override those of its launch template (as in RunInstances).
 * `missingLaunchTemplate` is true when a launch template is referenced but is not in this stack.
 */
export function effectiveMetadataOptions(node: CfnResource): { options: EffectiveMetadataOptions; missingLaunchTemplate: boolean } {
  const fromTemplate = (lt: CfnLaunchTemplate | undefined): EffectiveMetadataOptions =>
    lt ? resolved(lt, resolved(lt, lt.launchTemplateData)?.metadataOptions) ?? {} : {};

  if (node instanceof CfnLaunchTemplate) {
    return { options: fromTemplate(node), missingLaunchTemplate: false };
  }
  if (node instanceof CfnInstance) {
    const lt = findLaunchTemplate(node, node.launchTemplate);
    const own = resolved(node, node.metadataOptions) ?? {};
    return { options: { ...fromTemplate(lt), ...own }, missingLaunchTemplate: node.launchTemplate !== undefined && lt === undefined };
  }
  if (node instanceof CfnAutoScalingGroup) {
    const spec = node.launchTemplate
      ?? resolved(node, node.mixedInstancesPolicy)?.launchTemplate?.launchTemplateSpecification;
    const lt = findLaunchTemplate(node, spec);
    return { options: fromTemplate(lt), missingLaunchTemplate: lt === undefined };
  }
  return { options: {}, missingLaunchTemplate: false };
}

/**
 * The roles (of this stack) of the instance profile that instances launched by `node` get.
 * `profile` is 'none' when no instance profile is set, 'external' when it is not in this stack.
 */
export function instanceRoles(node: CfnResource): { profile: 'none' | 'external' | 'found'; roles: CfnRole[] } {
  let profileRef: unknown;
  if (node instanceof CfnInstance) {
    profileRef = node.iamInstanceProfile ?? instanceProfileOfTemplate(findLaunchTemplate(node, node.launchTemplate));
  } else if (node instanceof CfnLaunchTemplate) {
    profileRef = instanceProfileOfTemplate(node);
  } else if (node instanceof CfnAutoScalingGroup) {
    const spec = node.launchTemplate ?? resolved(node, node.mixedInstancesPolicy)?.launchTemplate?.launchTemplateSpecification;
    profileRef = instanceProfileOfTemplate(findLaunchTemplate(node, spec));
  }
  if (profileRef === undefined) return { profile: 'none', roles: [] };

  const profile = resourcesOfType(node, CfnInstanceProfile).find((p) =>
    isReferenceTo(node, profileRef, p, p.instanceProfileName));
  if (!profile) return { profile: 'external', roles: [] };
  const roleRefs: unknown[] = resolved(profile, profile.roles) ?? [];
  const roles = resourcesOfType(node, CfnRole).filter((role) =>
    roleRefs.some((ref) => isReferenceTo(profile, ref, role, role.roleName)));
  return { profile: 'found', roles };
}

function instanceProfileOfTemplate(lt: CfnLaunchTemplate | undefined): unknown {
  if (!lt) return undefined;
  const profile = resolved(lt, lt.launchTemplateData)?.iamInstanceProfile;
  return profile?.arn ?? profile?.name;
}

/** Tags as `{ key, value }` pairs, whatever casing the resource type renders them in. */
export function tagsOf(node: CfnResource): Array<{ key: unknown; value: unknown }> {
  const normalise = (tags: CfnJson[] | undefined) =>
    (tags ?? []).map((t) => ({ key: t.key ?? t.Key, value: t.value ?? t.Value }));
  if (node instanceof CfnLaunchTemplate) {
    const specs: CfnJson[] = resolved(node, node.launchTemplateData)?.tagSpecifications ?? [];
    return specs.flatMap((spec) => normalise(spec.tags ?? spec.Tags));
  }
  if (node instanceof CfnInstance || node instanceof CfnAutoScalingGroup) {
    return normalise(resolved(node, node.tags.renderTags()));
  }
  return [];
}
