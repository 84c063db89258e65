import { RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as wafv2 from 'aws-cdk-lib/aws-wafv2';
import { Construct } from 'constructs';
import { BackendEndpointType, type AgentBackendProps } from './agent-backend';
import { requireSourceAccount } from '../core/control-tower';
import { acknowledgeNagFindings, cfnResourceOf } from '../core/nag';
import { IDENTITY_HEARTBEAT_PATH, identityMethodThrottle, identityPolicyStatement } from './identity-document-heartbeats';

/** The stage agents call. */
const STAGE_NAME = 'live';

/**
 * The heartbeat API of `backend`, created in its scope (the RestApi is its `Resource`): IAM-authorized
 * POST /v1/heartbeat behind a resource policy, access logs, validation and throttling.
 */
export function createBackendApi(backend: Construct, props: AgentBackendProps, fn: lambda.IFunction, logRetention: logs.RetentionDays, encryptionKey: kms.IKey) {
  const stack = Stack.of(backend);
  const endpointType = props.endpointType ?? BackendEndpointType.REGIONAL;
  const accessLogs = new logs.LogGroup(backend, 'AccessLogs', {
    retention: logRetention,
    encryptionKey: encryptionKey,
    removalPolicy: RemovalPolicy.RETAIN,
  });

  const heartbeatResource = 'execute-api:/*/POST/v1/heartbeat';
  const statements = [
    // Delegates to IAM: a principal of this account also needs an identity policy (grantHeartbeat).
    new iam.PolicyStatement({
      sid: 'AllowHeartbeatsFromThisAccount',
      principals: [new iam.AccountRootPrincipal()],
      actions: ['execute-api:Invoke'],
      resources: [heartbeatResource],
    }),
  ];
  if (props.principalOrgId) {
    statements.push(new iam.PolicyStatement({
      sid: 'AllowHeartbeatsFromTheOrganization',
      principals: [new iam.AnyPrincipal()],
      actions: ['execute-api:Invoke'],
      resources: [heartbeatResource],
      conditions: {
        StringEquals: { 'aws:PrincipalOrgID': props.principalOrgId },
        // Principals of this account stay under the delegation above, which needs an identity policy.
        StringNotEquals: { 'aws:PrincipalAccount': stack.account },
      },
    }));
  }
  const identity = endpointType === BackendEndpointType.PRIVATE ? props.identityDocumentHeartbeats : undefined;
  if (identity) statements.push(identityPolicyStatement((props.vpcEndpoints ?? []).map((e) => e.vpcEndpointId)));
  if (endpointType === BackendEndpointType.PRIVATE) {
    statements.push(new iam.PolicyStatement({
      sid: 'DenyOutsideTheVpcEndpoints',
      effect: iam.Effect.DENY,
      principals: [new iam.AnyPrincipal()],
      actions: ['execute-api:Invoke'],
      resources: ['execute-api:/*'],
      conditions: { StringNotEquals: { 'aws:SourceVpce': (props.vpcEndpoints ?? []).map((e) => e.vpcEndpointId) } },
    }));
  }

  const api = new apigw.RestApi(backend, 'Resource', {
    description: `Heartbeats and instructions of the host security agents (${backend.node.path})`,
    endpointConfiguration: endpointType === BackendEndpointType.PRIVATE
      ? { types: [apigw.EndpointType.PRIVATE], vpcEndpoints: props.vpcEndpoints }
      : { types: [apigw.EndpointType.REGIONAL] },
    policy: new iam.PolicyDocument({ statements }),
    // Never touch the account-wide API Gateway settings (AWS::ApiGateway::Account) from a construct.
    cloudWatchRole: false,
    defaultMethodOptions: { authorizationType: apigw.AuthorizationType.IAM },
    deployOptions: {
      stageName: STAGE_NAME,
      accessLogDestination: new apigw.LogGroupLogDestination(accessLogs),
      accessLogFormat: apigw.AccessLogFormat.jsonWithStandardFields({
        caller: true, httpMethod: true, ip: true, protocol: true, requestTime: true,
        resourcePath: true, responseLength: true, status: true, user: true,
      }),
      tracingEnabled: true,
      throttlingRateLimit: props.throttlingRateLimit ?? 100,
      throttlingBurstLimit: props.throttlingBurstLimit ?? 200,
      methodOptions: identity ? { [`${IDENTITY_HEARTBEAT_PATH}/POST`]: identityMethodThrottle(identity) } : undefined,
      loggingLevel: props.executionLoggingLevel ?? apigw.MethodLoggingLevel.ERROR,
      dataTraceEnabled: false,
      metricsEnabled: true,
    },
  });

  // The gateway rejects bodies that are not a JSON object before the function runs; the
  // function applies the closed schema and says exactly what is wrong.
  const validator = api.addRequestValidator('Validator', { validateRequestBody: true, validateRequestParameters: true });
  const model = api.addModel('HeartbeatModel', {
    contentType: 'application/json',
    description: 'A heartbeat is a JSON object; its closed schema is enforced by the function',
    schema: { schema: apigw.JsonSchemaVersion.DRAFT4, title: 'Heartbeat', type: apigw.JsonSchemaType.OBJECT },
  });
  const v1 = api.root.addResource('v1');
  const heartbeat = v1.addResource('heartbeat');
  const post = heartbeat.addMethod('POST', new apigw.LambdaIntegration(fn, { proxy: true, allowTestInvoke: false }), {
    authorizationType: apigw.AuthorizationType.IAM,
    requestValidator: validator,
    requestModels: { 'application/json': model },
  });
  requireSourceAccount(post);
  acknowledgeNagFindings(cfnResourceOf(post), {
    rule: 'AwsSolutions-COG4',
    reason: 'Callers are EC2 instances, not users: they sign with their instance role (SigV4, AuthorizationType IAM), which identifies the instance; Cognito user pools do not apply.',
  });

  const stage = api.deploymentStage;
  const cfnStage = cfnResourceOf(stage);
  if (props.webAclArn) {
    new wafv2.CfnWebACLAssociation(backend, 'WebAclAssociation', { resourceArn: stage.stageArn, webAclArn: props.webAclArn });
  } else {
    acknowledgeNagFindings(cfnStage,
      ...['AwsSolutions-APIG3', 'NIST.800.53.R5-APIGWAssociatedWithWAF', 'HIPAA.Security-APIGWAssociatedWithWAF', 'PCI.DSS.321-APIGWAssociatedWithWAF'].map((rule) => ({
        rule,
        reason: 'Every method requires SigV4 (IAM) authorization and the resource policy admits only this account or organization, so anonymous traffic never reaches the function; stage throttling caps the rate; bodies are closed-schema validated. Pass webAclArn to add an organization-managed web ACL.',
      })),
    );
  }
  acknowledgeNagFindings(cfnStage,
    ...['NIST.800.53.R5-APIGWCacheEnabledAndEncrypted', 'HIPAA.Security-APIGWCacheEnabledAndEncrypted', 'PCI.DSS.321-APIGWCacheEnabledAndEncrypted'].map((rule) => ({
      rule,
      reason: 'The only method is a POST answered per instance and per moment; API Gateway never caches POST responses, so a cache cluster would cost money and hold nothing.',
    })),
    ...['NIST.800.53.R5-APIGWSSLEnabled', 'HIPAA.Security-APIGWSSLEnabled', 'PCI.DSS.321-APIGWSSLEnabled'].map((rule) => ({
      rule,
      reason: 'Client certificates authenticate API Gateway to HTTP backends; the only integration is a Lambda proxy invoked over the AWS API with IAM, which a client certificate does not apply to.',
    })),
  );
  return { api, stage, accessLogs, v1, validator, model };
}
