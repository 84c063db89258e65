import { X509Certificate } from 'node:crypto';
import { Duration, Fn, Stack, Token } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import { Construct } from 'constructs';
import { acknowledgeNagFindings, cfnResourceOf } from '../core/nag';
import { PropsValidator } from '../core/validation';
import { createBackendFunction } from './backend-functions';
import { registryKeyStatements } from './backend-registry';
import { IdentityDocumentHeartbeatOptions } from './identity-document-heartbeat-options';

/** The path of the identity-document heartbeat on the backend's API. */
export const IDENTITY_HEARTBEAT_PATH = '/v1/identity-heartbeat';

/** Checks the options at synth time; `privateApi` is whether the backend's API is PRIVATE. */
export function validateIdentityOptions(v: PropsValidator, options: IdentityDocumentHeartbeatOptions | undefined, privateApi: boolean): void {
  if (!options) return;
  v.require(privateApi, 'identityDocumentHeartbeats', 'on',
    'only with endpointType PRIVATE: the path binds a request to the instance by the VPC address it comes from, which only a PRIVATE API reached through the VPC\'s interface endpoint sees');
  const pem = options.regionCertificate;
  if (!Token.isUnresolved(pem)) {
    let problem: string | undefined;
    try {
      const cert = new X509Certificate(pem);
      if (cert.publicKey.asymmetricKeyType !== 'rsa') problem = `a certificate with a ${cert.publicKey.asymmetricKeyType} key`;
    } catch {
      problem = 'text that is not a PEM certificate';
    }
    v.require(problem === undefined, 'identityDocumentHeartbeats.regionCertificate', problem ?? '',
      'the PEM of the RSA certificate AWS publishes for this Region (not the DSA or RSA-2048 one)');
  }
  v.integerInRange('identityDocumentHeartbeats.throttlingRateLimit', options.throttlingRateLimit, 1, 1000);
  v.integerInRange('identityDocumentHeartbeats.throttlingBurstLimit', options.throttlingBurstLimit, 1, 2000);
}

/** The method throttle of the identity path, for the stage's method settings. */
export function identityMethodThrottle(options: IdentityDocumentHeartbeatOptions): apigw.MethodDeploymentOptions {
  return { throttlingRateLimit: options.throttlingRateLimit ?? 20, throttlingBurstLimit: options.throttlingBurstLimit ?? 40 };
}

/**
 * The resource policy statement that lets anonymous callers invoke the identity path, and
 * only through the backend's endpoints (the stage-wide deny says the same once more).
 */
export function identityPolicyStatement(vpcEndpointIds: string[]): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'AllowIdentityDocumentHeartbeatsThroughTheVpcEndpoints',
    principals: [new iam.AnyPrincipal()],
    actions: ['execute-api:Invoke'],
    resources: [`execute-api:/*/POST${IDENTITY_HEARTBEAT_PATH}`],
    conditions: { StringEquals: { 'aws:SourceVpce': vpcEndpointIds } },
  });
}

/**
 * The function `IdentityHeartbeat` and the method POST /v1/identity-heartbeat (authorization
 * NONE: the function authenticates the signed document and binds it to the instance).
 */
export function addIdentityHeartbeats(backend: Construct, args: {
  options: IdentityDocumentHeartbeatOptions;
  v1: apigw.IResource;
  validator: apigw.IRequestValidator;
  model: apigw.IModel;
  environment: Record<string, string>;
  vpcEndpointIds: string[];
  registry: dynamodb.ITable;
  encryptionKey: kms.IKey;
  logRetention: logs.RetentionDays;
}): lambda.Function {
  const stack = Stack.of(backend);
  const certificate = args.options.regionCertificate.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
  const fn = createBackendFunction(backend, args.encryptionKey, 'IdentityHeartbeat', 'identity-heartbeat', {
    bundle: { name: 'heartbeat', entryPoint: 'identityHandler' },
    description: 'Heartbeats of instances without a role: verifies the signed identity document, binds it to the instance, registers the agent',
    environment: {
      ...args.environment,
      // This path hands out no instructions, so its function knows no templates.
      ASSESSMENT_TEMPLATES: '[]',
      IDENTITY_DOCUMENT_CERTIFICATE: certificate,
      IDENTITY_VPC_ENDPOINTS: Fn.join(',', args.vpcEndpointIds),
      INSTANCE_CACHE_SECONDS: String(Duration.minutes(1).toSeconds()),
    },
    memorySize: 512,
    timeout: Duration.seconds(10),
    // Unauthenticated callers reach this function: a small reservation keeps them from the role path's.
    reservedConcurrentExecutions: 5,
    logRetention: args.logRetention,
    statements: [
      new iam.PolicyStatement({ actions: ['dynamodb:UpdateItem'], resources: [args.registry.tableArn] }),
      ...registryKeyStatements(backend, args.encryptionKey),
      new iam.PolicyStatement({
        actions: ['ec2:DescribeInstances', 'ec2:DescribeVpcEndpoints'],
        resources: ['*'],
        conditions: { StringEquals: { 'aws:RequestedRegion': stack.region } },
      }),
    ],
    wildcardReasons: {
      'Resource::*': 'ec2:DescribeInstances and ec2:DescribeVpcEndpoints support no resource-level permissions; the statement is limited to this Region by aws:RequestedRegion and only reads.',
    },
  }).fn;

  const post = args.v1.addResource('identity-heartbeat').addMethod('POST',
    new apigw.LambdaIntegration(fn, { proxy: true, allowTestInvoke: false }), {
      authorizationType: apigw.AuthorizationType.NONE,
      requestValidator: args.validator,
      requestModels: { 'application/json': args.model },
    });
  const reason = 'Instances without a role have no credentials to sign with. This one method authenticates callers in its function: the identity '
    + 'document\'s AWS signature, then the request bound to the instance (only through the backend\'s interface endpoints, by resource policy; from '
    + 'the running instance\'s primary private address in the endpoint\'s VPC, by EC2). It only records a heartbeat and hands out no instructions. '
    + 'See the README\'s threat model.';
  acknowledgeNagFindings(cfnResourceOf(post),
    { rule: 'AwsSolutions-APIG4', reason },
    { rule: 'AwsSolutions-COG4', reason },
  );
  return fn;
}
