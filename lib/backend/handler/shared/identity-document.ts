/*
 * The identity-document path's checks that need no AWS call: the document's signature
 * (AWS's base64 SHA256withRSA `signature`, verified with node's crypto against the Region's
 * certificate the construct was given), the document against the backend and the body, and
 * the request's network origin against the document. See the README's threat model.
 */
import { createPublicKey, KeyObject, verify, X509Certificate } from 'node:crypto';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { HeartbeatBody, IdentityDocumentFields, Rejected } from './heartbeat-core';
import { HEARTBEAT_SCHEMA, SchemaNode } from './heartbeat-schema';

/** Largest identity-path body: a heartbeat (16 KiB) plus the document and its signature. */
export const MAX_IDENTITY_HEARTBEAT_BYTES = 20 * 1024;

/** The heartbeat schema plus the signed document, exactly as IMDS served both. */
export const IDENTITY_HEARTBEAT_SCHEMA: SchemaNode = {
  ...HEARTBEAT_SCHEMA,
  required: [...HEARTBEAT_SCHEMA.required ?? [], 'signedIdentityDocument'],
  properties: {
    ...HEARTBEAT_SCHEMA.properties,
    signedIdentityDocument: {
      type: 'object',
      additionalProperties: false,
      description: 'The instance identity document and its signature, byte for byte as IMDS returned them',
      required: ['document', 'signature'],
      properties: {
        document: { type: 'string', minLength: 2, maxLength: 2048, pattern: '^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f]*$',
          description: '/latest/dynamic/instance-identity/document' },
        signature: { type: 'string', minLength: 16, maxLength: 1024, pattern: '^[A-Za-z0-9+/=\\r\\n]+$',
          description: '/latest/dynamic/instance-identity/signature (base64 SHA256withRSA)' },
      },
    },
  },
};

/** A heartbeat body of the identity path. */
export interface IdentityHeartbeatBody extends HeartbeatBody {
  readonly signedIdentityDocument: { readonly document: string; readonly signature: string };
}

/** The fields of a verified identity document this backend relies on. */
export interface SignedIdentity extends IdentityDocumentFields {
  readonly privateIp: string;
}

const IPV4 = /^(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$/;

/** The public key of the Region's certificate, given as PEM or as its base64 body. */
export function certificateKey(pemOrBase64: string): KeyObject {
  const body = pemOrBase64.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
  const pem = `-----BEGIN CERTIFICATE-----\n${body.match(/.{1,64}/g)?.join('\n') ?? ''}\n-----END CERTIFICATE-----\n`;
  const key = createPublicKey(new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'pem' }));
  if (key.asymmetricKeyType !== 'rsa') throw new Error(`the identity document certificate has a ${key.asymmetricKeyType} key; the signature path needs RSA`);
  return key;
}

/**
 * The document, once its signature verifies and its fields are well formed; otherwise a 403.
 * The signature covers the document's exact bytes, so the document is parsed only after.
 */
export function verifySignedDocument(signed: IdentityHeartbeatBody['signedIdentityDocument'], key: KeyObject): SignedIdentity {
  const signature = Buffer.from(signed.signature.replace(/[\r\n]/g, ''), 'base64');
  let valid: boolean;
  try {
    valid = verify('sha256', Buffer.from(signed.document, 'utf8'), key, signature);
  } catch {
    valid = false;
  }
  if (!valid) throw new Rejected(403, 'BadSignature', 'signedIdentityDocument.signature does not verify against the AWS certificate of this Region');
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(signed.document);
  } catch {
    throw new Rejected(403, 'BadSignature', 'signedIdentityDocument.document is signed but is not JSON');
  }
  const text = (name: string, pattern: RegExp): string => {
    const value = doc?.[name];
    if (typeof value !== 'string' || !pattern.test(value)) throw new Rejected(403, 'BadSignature', `the signed document has no valid ${name}`);
    return value;
  };
  return {
    accountId: text('accountId', /^[0-9]{12}$/),
    region: text('region', /^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$/),
    availabilityZone: text('availabilityZone', /^[a-z]{2}(-[a-z0-9]+)+[a-z]?$/),
    instanceId: text('instanceId', /^i-([0-9a-f]{8}|[0-9a-f]{17})$/),
    instanceType: text('instanceType', /^[a-z0-9-]+\.[a-z0-9-]+$/),
    imageId: text('imageId', /^ami-([0-9a-f]{8}|[0-9a-f]{17})$/),
    architecture: typeof doc.architecture === 'string' ? doc.architecture : undefined,
    privateIp: text('privateIp', IPV4),
  };
}

/**
 * The signed document must be of this backend's account and Region, and the body's
 * identity fields must be the signed ones (instance type and image included: the registry
 * meters by them).
 */
export function confirmSignedIdentity(signed: SignedIdentity, body: HeartbeatBody, backend: { accountId: string; region: string }): void {
  if (signed.accountId !== backend.accountId) {
    throw new Rejected(403, 'IdentityMismatch', `the signed document's account ${signed.accountId} is not this backend's account: the identity path serves only instances of its own account`);
  }
  if (signed.region !== backend.region) {
    throw new Rejected(403, 'IdentityMismatch', `the signed document's Region ${signed.region} is not this backend's Region ${backend.region}`);
  }
  const doc = body.identityDocument;
  for (const field of ['instanceId', 'accountId', 'region', 'availabilityZone', 'instanceType', 'imageId', 'architecture'] as const) {
    if (doc[field] !== undefined && doc[field] !== signed[field]) {
      throw new Rejected(403, 'IdentityMismatch', `identityDocument.${field} ${doc[field]} is not the signed document's ${signed[field] ?? '(none)'}`);
    }
  }
}

/** The network origin of a request through a private API's interface endpoint. */
export interface NetworkOrigin {
  readonly sourceIp: string;
  readonly vpceId: string;
}

/**
 * The request must have come through one of the backend's interface endpoints (the
 * resource policy already says so; checked again here), from an IPv4 address, carry no
 * forwarding header that names another address, and come from the address the signed
 * document names. Whether that address is still the instance's is EC2's to say (instance-lookup.ts).
 */
export function networkOrigin(event: Pick<APIGatewayProxyEvent, 'requestContext' | 'headers' | 'multiValueHeaders'>, signed: SignedIdentity, endpoints: ReadonlySet<string>): NetworkOrigin {
  const identity = event.requestContext?.identity as (APIGatewayProxyEvent['requestContext']['identity'] & { vpceId?: string | null }) | undefined;
  const vpceId = identity?.vpceId ?? '';
  if (!endpoints.has(vpceId)) {
    throw new Rejected(403, 'NotBoundToInstance', 'the request did not come through one of this backend\'s interface VPC endpoints');
  }
  const sourceIp = identity?.sourceIp ?? '';
  if (!IPV4.test(sourceIp)) {
    throw new Rejected(403, 'NotBoundToInstance', 'the identity path binds a request to the instance\'s private IPv4 address: call over IPv4');
  }
  const forwarded = [
    ...Object.entries(event.headers ?? {}).filter(([name]) => name.toLowerCase() === 'x-forwarded-for').map(([, v]) => v ?? ''),
    ...Object.entries(event.multiValueHeaders ?? {}).filter(([name]) => name.toLowerCase() === 'x-forwarded-for').flatMap(([, v]) => v ?? []),
  ].flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v.length > 0);
  if (forwarded.some((address) => address !== sourceIp)) {
    throw new Rejected(403, 'NotBoundToInstance', 'the request carries a forwarding header naming another address: the identity path takes no proxied requests');
  }
  if (signed.privateIp !== sourceIp) {
    throw new Rejected(403, 'NotBoundToInstance', `the request comes from ${sourceIp}, not from the signed document's private address`);
  }
  return { sourceIp, vpceId };
}
