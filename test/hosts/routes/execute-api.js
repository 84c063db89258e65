/*
 * The backend's heartbeat method as the companion sees it (POST /prod/v1/heartbeat on the test
 * host's HTTPS server): each request's SigV4 signature is verified with @smithy/signature-v4
 * against the instance profile credentials the test IMDS serves (credentials.json) and the
 * Region of the identity document. Every request goes to heartbeats.log as one JSON line
 * (verdict, signed headers, body); verified ones get heartbeat-answer.json.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { Hash } = require('@smithy/hash-node');
const { SignatureV4 } = require('@smithy/signature-v4');

async function verify(req, body, read) {
  const authorization = String(req.headers.authorization || '');
  const match = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/execute-api\/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=[0-9a-f]{64}$/.exec(authorization);
  if (!match) return { verdict: 'IncompleteSignature', signedHeaders: '' };
  const [, accessKeyId, , region, signedHeaders] = match;
  const credentials = JSON.parse(read('credentials.json', '{}'));
  const identity = JSON.parse(read('identity.json', '{}'));
  if (accessKeyId !== credentials.AccessKeyId || req.headers['x-amz-security-token'] !== credentials.Token) {
    return { verdict: 'UnrecognizedClient', signedHeaders };
  }
  const amzDate = String(req.headers['x-amz-date'] || '');
  const signingDate = new Date(amzDate.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'));
  const headers = {};
  for (const name of signedHeaders.split(';')) {
    if (name !== 'x-amz-date' && name !== 'x-amz-security-token') headers[name] = String(req.headers[name] || '');
  }
  const signer = new SignatureV4({
    credentials: { accessKeyId, secretAccessKey: credentials.SecretAccessKey, sessionToken: credentials.Token },
    region: identity.region, service: 'execute-api', sha256: Hash.bind(null, 'sha256'), applyChecksum: false,
  });
  const expected = await signer.sign({
    method: req.method, protocol: 'https:', hostname: String(req.headers.host), path: req.url.split('?')[0], query: {}, headers, body,
  }, { signingDate });
  const ok = region === identity.region && String(expected.headers.authorization || expected.headers.Authorization) === authorization;
  return { verdict: ok ? 'ok' : 'SignatureDoesNotMatch', signedHeaders };
}

module.exports = function executeApi(req, res, body, { dir, read, record }) {
  if (!req.url.startsWith('/prod/v1/heartbeat')) return false;
  record('execute-api', req);
  verify(req, body, read).catch((err) => ({ verdict: `error: ${err}`, signedHeaders: '' })).then(({ verdict, signedHeaders }) => {
    fs.appendFileSync(path.join(dir, 'heartbeats.log'), JSON.stringify({ verdict, signedHeaders, body: body.toString('utf8') }) + '\n');
    const ok = verdict === 'ok' && req.method === 'POST';
    res.writeHead(ok ? 200 : 403, { 'content-type': 'application/json' });
    res.end(ok ? read('heartbeat-answer.json', '{}') : JSON.stringify({ message: verdict }));
  });
  return true;
};
