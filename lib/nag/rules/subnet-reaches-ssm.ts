import { CfnResource } from 'aws-cdk-lib';
import { CfnRoute, CfnSubnet, CfnSubnetRouteTableAssociation, CfnVPCEndpoint } from 'aws-cdk-lib/aws-ec2';
import { NagRuleCompliance } from 'cdk-nag';
import { isReferenceTo, referenced, resolved, resourcesOfType } from './template-lookup';

/** The interface endpoints an SSM agent needs when it cannot reach the public endpoints. */
const SSM_SERVICES = ['ssm', 'ssmmessages', 'ec2messages'];
/** Route targets that lead out of the VPC (NAT gateway or instance, internet or transit gateway). */
const EGRESS_TARGETS = ['natGatewayId', 'instanceId', 'gatewayId', 'transitGatewayId', 'networkInterfaceId'] as const;

/**
 * Subnets let the SSM agent reach SSM: their VPC has interface endpoints for ssm,
 * ssmmessages and ec2messages, or the subnet has a default route out (NAT, internet or
 * transit gateway). Otherwise instances there never become managed and never get the agent.
 */
export function subnetReachesSsm(node: CfnResource): NagRuleCompliance {
  if (!(node instanceof CfnSubnet)) return NagRuleCompliance.NOT_APPLICABLE;
  const vpc = referenced(node, node.vpcId);

  const endpointServices = resourcesOfType(node, CfnVPCEndpoint)
    .filter((ep) => referenced(ep, ep.vpcId) === vpc && resolved(ep, ep.vpcEndpointType) === 'Interface')
    .map((ep) => JSON.stringify(resolved(ep, ep.serviceName)));
  const hasEndpoints = SSM_SERVICES.every((service) =>
    endpointServices.some((name) => name.includes(`.${service}"`)));
  if (hasEndpoints) return NagRuleCompliance.COMPLIANT;

  const routeTables = resourcesOfType(node, CfnSubnetRouteTableAssociation)
    .filter((assoc) => isReferenceTo(assoc, assoc.subnetId, node))
    .map((assoc) => referenced(assoc, assoc.routeTableId));
  const routesOut = resourcesOfType(node, CfnRoute).some((route) =>
    routeTables.includes(referenced(route, route.routeTableId))
    && resolved(route, route.destinationCidrBlock) === '0.0.0.0/0'
    && EGRESS_TARGETS.some((target) => route[target] !== undefined));
  return routesOut ? NagRuleCompliance.COMPLIANT : NagRuleCompliance.NON_COMPLIANT;
}
