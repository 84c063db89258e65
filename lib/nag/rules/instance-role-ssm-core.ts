import { CfnResource } from 'aws-cdk-lib';
import { CfnManagedPolicy, CfnPolicy, CfnRole } from 'aws-cdk-lib/aws-iam';
import { NagRuleCompliance } from 'cdk-nag';
import { CfnJson, isReferenceTo, instanceRoles, launchesInstances, resolved, resourcesOfType } from './template-lookup';

/** AWS managed policies that let the SSM agent register and take commands. */
const SSM_CORE_POLICIES = /:iam::aws:policy\/(AmazonSSMManagedInstanceCore|AmazonSSMManagedEC2InstanceDefaultPolicy)"/;
/** The call every SSM agent makes to register; a role that may not make it is not managed. */
const REGISTER = 'ssm:UpdateInstanceInformation';

/**
 * Instances get a role that SSM can manage them with (AmazonSSMManagedInstanceCore or a
 * policy that allows `ssm:UpdateInstanceInformation`): the agent is installed over SSM.
 * Without an instance profile only Default Host Management makes an instance managed.
 */
export function instanceRoleSsmCore(defaultHostManagement: boolean): (node: CfnResource) => NagRuleCompliance {
  return (node) => {
    if (!launchesInstances(node)) return NagRuleCompliance.NOT_APPLICABLE;
    const { profile, roles } = instanceRoles(node);
    if (profile === 'none') {
      return defaultHostManagement ? NagRuleCompliance.COMPLIANT : NagRuleCompliance.NON_COMPLIANT;
    }
    if (roles.length === 0) return NagRuleCompliance.NON_COMPLIANT; // profile or role outside this stack: cannot be shown
    return roles.some((role) => roleCanRegister(role)) ? NagRuleCompliance.COMPLIANT : NagRuleCompliance.NON_COMPLIANT;
  };
}

function roleCanRegister(role: CfnRole): boolean {
  if (SSM_CORE_POLICIES.test(JSON.stringify(resolved(role, role.managedPolicyArns) ?? []))) return true;
  const inline: CfnJson[] = resolved(role, role.policies) ?? [];
  if (inline.some((p) => documentAllows(p.policyDocument ?? p.PolicyDocument))) return true;
  const attachedPolicies = resourcesOfType(role, CfnPolicy).filter((p) =>
    (resolved(p, p.roles) ?? []).some((r: unknown) => isReferenceTo(p, r, role, role.roleName)));
  if (attachedPolicies.some((p) => documentAllows(resolved(p, p.policyDocument)))) return true;
  const managedArns: unknown[] = resolved(role, role.managedPolicyArns) ?? [];
  return resourcesOfType(role, CfnManagedPolicy).some((mp) => {
    const attached = (resolved(mp, mp.roles) ?? []).some((r: unknown) => isReferenceTo(mp, r, role, role.roleName))
      || managedArns.some((arn) => isReferenceTo(role, arn, mp));
    return attached && documentAllows(resolved(mp, mp.policyDocument));
  });
}

function documentAllows(document: CfnJson): boolean {
  const statements: CfnJson[] = [document?.Statement ?? []].flat();
  return statements.some((s) => s.Effect === 'Allow'
    && [s.Action ?? []].flat().some((a: string) => a === REGISTER || a === 'ssm:*' || a === '*'));
}
