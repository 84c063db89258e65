/*
 * A stand-in of Secrets Manager (GetSecretValue) and Parameter Store (GetParameter) for the
 * real-host tests, answering on the package server (server.js). Every request's SigV4
 * signature is recomputed with an independent implementation (@smithy/signature-v4) from the
 * credentials the test IMDS served (credentials.json) and compared; a request signed
 * otherwise gets the error AWS would give. Files in the server's dir:
 *   secrets.json       { "<ARN>": { "value": "...", "version": "..." } } (Secrets Manager ARNs
 *                      contain ":secret:", parameter ARNs ":parameter/")
 *   secrets-region     the region the services are in (default us-east-1)
 * Each request is appended to secrets-requests.log as one JSON line: the target, the request
 * body as sent (what CloudTrail would record as request parameters), the access key, the
 * verdict.
 */
'use strict';
const { Buffer } = require('node:buffer');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { Hash } = require('@smithy/hash-node');
const { SignatureV4 } = require('@smithy/signature-v4');

const TARGETS = { 'secretsmanager.GetSecretValue': 'secretsmanager', 'AmazonSSM.GetParameter': 'ssm' };
const AUTHORIZATION = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([a-z]+)\/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$/;

module.exports = function secrets(req, res, body, { dir, read }) {
  const target = String(req.headers['x-amz-target'] ?? '');
  const service = TARGETS[target];
  if (req.method !== 'POST' || !service) return false;
  const log = (entry) => fs.appendFileSync(path.join(dir, 'secrets-requests.log'), JSON.stringify({ target, body: body.toString('utf8'), ...entry }) + '\n');
  const answer = (status, document, verdict, accessKeyId = '') => {
    log({ verdict, accessKeyId });
    res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': 'test-request' });
    res.end(JSON.stringify(document));
  };
  const error = (status, type, verdict, accessKeyId) => answer(status, { __type: type, message: type }, verdict, accessKeyId);
  void verify(req, body, service, read).then((problem) => {
    const accessKeyId = (AUTHORIZATION.exec(String(req.headers.authorization ?? '')) ?? [])[1] ?? '';
    if (problem) return error(problem[0], problem[1], problem[1], accessKeyId);
    if (req.headers['content-type'] !== 'application/x-amz-json-1.1') return error(400, 'SerializationException', 'bad content-type', accessKeyId);
    let request;
    try { request = JSON.parse(body.toString('utf8')); } catch { return error(400, 'SerializationException', 'not JSON', accessKeyId); }
    let store;
    try { store = JSON.parse(read('secrets.json', '{}')); } catch { store = {}; }
    if (service === 'secretsmanager') {
      const secret = store[request.SecretId];
      if (!secret || !request.SecretId.includes(':secret:')) return error(400, 'ResourceNotFoundException', 'not found', accessKeyId);
      return answer(200, {
        ARN: request.SecretId, Name: request.SecretId.split(':secret:')[1], SecretString: secret.value,
        VersionId: secret.version ?? 'v1', VersionStages: ['AWSCURRENT'], CreatedDate: 1.7e9,
      }, 'ok', accessKeyId);
    }
    const parameter = store[request.Name];
    if (!parameter || !request.Name.includes(':parameter/')) return error(400, 'ParameterNotFound', 'not found', accessKeyId);
    // Without WithDecryption, Parameter Store answers a SecureString's ciphertext.
    const value = request.WithDecryption === true ? parameter.value : Buffer.from(`ciphertext of ${request.Name}`).toString('base64');
    return answer(200, {
      Parameter: {
        ARN: request.Name, Name: request.Name.split(':parameter')[1], Type: 'SecureString', Value: value,
        Version: Number(parameter.version ?? 1), DataType: 'text', LastModifiedDate: 1.7e9, Selector: null,
      },
    }, 'ok', accessKeyId);
  });
  return true;
};

/** Undefined when the signature is good; otherwise the status and error AWS would answer. */
async function verify(req, body, service, read) {
  const match = AUTHORIZATION.exec(String(req.headers.authorization ?? ''));
  if (!match) return [400, 'MissingAuthenticationTokenException'];
  const [, accessKeyId, day, region, signedService, signedHeaders, signature] = match;
  let known;
  try { known = JSON.parse(read('credentials.json', '')); } catch { return [403, 'UnrecognizedClientException']; }
  if (accessKeyId !== known.AccessKeyId) return [403, 'UnrecognizedClientException'];
  if (signedService !== service || region !== read('secrets-region', 'us-east-1')) return [403, 'InvalidSignatureException'];
  if (String(req.headers['x-amz-security-token'] ?? '') !== (known.Token ?? '')) return [403, 'UnrecognizedClientException'];
  const amzDate = String(req.headers['x-amz-date'] ?? '');
  const signingDate = new Date(amzDate.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'));
  if (Number.isNaN(signingDate.getTime()) || !amzDate.startsWith(day) || Math.abs(Date.now() - signingDate.getTime()) > 5 * 60_000) {
    return [400, 'InvalidSignatureException'];
  }
  const names = signedHeaders.split(';');
  // The payload hash the client states must be the body's (the signer would trust it).
  const stated = req.headers['x-amz-content-sha256'];
  if (stated !== undefined && stated !== crypto.createHash('sha256').update(body).digest('hex')) return [400, 'InvalidSignatureException'];
  // Both services require the host, the date and the target among the signed headers.
  if (!['host', 'x-amz-date', 'x-amz-target', 'x-amz-security-token'].every((name) => names.includes(name))) return [400, 'IncompleteSignatureException'];
  const headers = {};
  for (const name of names) {
    if (name === 'x-amz-date' || name === 'x-amz-security-token') continue; // the signer adds both
    headers[name] = String(req.headers[name] ?? '');
  }
  const signer = new SignatureV4({
    credentials: { accessKeyId: known.AccessKeyId, secretAccessKey: known.SecretAccessKey, sessionToken: known.Token },
    region, service, sha256: Hash.bind(null, 'sha256'), applyChecksum: false,
  });
  const expected = await signer.sign({
    method: req.method, protocol: 'https:', hostname: String(req.headers.host), path: req.url, query: {}, headers, body,
  }, { signingDate });
  const authorization = String(expected.headers.authorization ?? expected.headers.Authorization);
  return authorization.endsWith(`Signature=${signature}`) && authorization === req.headers.authorization ? undefined : [403, 'InvalidSignatureException'];
}
