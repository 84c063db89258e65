/*
 * Runs inside a test host's network namespace: the instance metadata service on
 * 169.254.169.254:80 and the package server on 127.0.0.1:443 (HTTPS, the test CA's
 * certificate). Its behaviour comes from files in <dir>, which the tests change:
 *   imds-mode      v2 (IMDSv2 only), v1 (token requests refused), hang (token requests
 *                  never answered), none (everything 500)
 *   token          the token IMDSv2 hands out
 *   tags/<key>     instance tags (absent dir entries = no tags)
 *   delay-ms       how long each metadata answer takes (so tests can watch curl run)
 *   www/<file>     the packages
 *   role           the instance profile role IMDS names (absent: no instance profile)
 *   credentials.json  the role's credentials document, served as IMDS serves it
 *   identity.json  the instance identity document
 * HTTPS requests the package server does not serve (anything but a GET of www/<file>) go to
 * the route modules in ./routes/*.js, in name order: each exports
 * `(req, res, body, context) => boolean` (true when it answered; body is the request's bytes,
 * context = { dir, read, record }). Stand-ins of AWS APIs live there.
 * Every request is appended to <dir>/requests.log as one JSON line.
 */
'use strict';
const { Buffer } = require('node:buffer');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const path = require('node:path');
const { setTimeout } = require('node:timers');

const dir = process.argv[2];
const read = (name, fallback) => { try { return fs.readFileSync(path.join(dir, name), 'utf8').trim(); } catch { return fallback; } };
const record = (kind, req) => fs.appendFileSync(path.join(dir, 'requests.log'), JSON.stringify({
  kind, method: req.method, url: req.url, token: req.headers['x-aws-ec2-metadata-token'] ?? null,
}) + '\n');

function imds(req, res) {
  record('imds', req);
  const mode = read('imds-mode', 'v2');
  const token = read('token', 'test-token');
  const answer = (status, body = '') => setTimeout(() => { res.writeHead(status); res.end(body); }, Number(read('delay-ms', '0')));
  if (mode === 'none') return answer(500);
  if (req.url === '/latest/api/token') {
    if (req.method !== 'PUT') return answer(405);
    if (mode === 'hang') return undefined;
    if (mode === 'v1') return answer(403);
    return answer(200, token);
  }
  const given = req.headers['x-aws-ec2-metadata-token'];
  if (given !== undefined && given !== token) return answer(401);
  if (given === undefined && mode !== 'v1' && mode !== 'hang') return answer(401);
  if (req.url === '/latest/meta-data/instance-id') return answer(200, 'i-0123456789abcdef0');
  const role = read('role', '');
  if (req.url === '/latest/meta-data/iam/security-credentials/' || req.url === '/latest/meta-data/iam/security-credentials') {
    return role ? answer(200, role) : answer(404);
  }
  if (role && req.url === `/latest/meta-data/iam/security-credentials/${role}`) return answer(200, read('credentials.json', ''));
  if (req.url === '/latest/dynamic/instance-identity/document') {
    const document = read('identity.json', '');
    return document ? answer(200, document) : answer(404);
  }
  const tagsDir = path.join(dir, 'tags');
  const tags = fs.existsSync(tagsDir) ? fs.readdirSync(tagsDir) : [];
  if (req.url === '/latest/meta-data/tags/instance') return tags.length ? answer(200, tags.join('\n')) : answer(404);
  const key = req.url.replace(/^\/latest\/meta-data\/tags\/instance\//, '');
  if (key !== req.url && tags.includes(key)) return answer(200, read(path.join('tags', key), ''));
  return answer(404);
}

const routes = fs.existsSync(path.join(__dirname, 'routes'))
  ? fs.readdirSync(path.join(__dirname, 'routes')).filter((name) => name.endsWith('.js')).sort()
    .map((name) => require(path.join(__dirname, 'routes', name)))
  : [];

function aws(req, res) {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    if (!routes.some((route) => route(req, res, body, { dir, read, record }))) { res.writeHead(404); res.end(); }
  });
}

function packages(req, res) {
  record('https', req);
  const file = path.join(dir, 'www', path.basename(req.url.split('?')[0]));
  if (req.method !== 'GET' || !fs.existsSync(file)) { aws(req, res); return; }
  res.writeHead(200, { 'content-length': fs.statSync(file).size });
  fs.createReadStream(file).pipe(res);
}

let listening = 0;
const ready = () => { if (++listening === 2) fs.writeFileSync(path.join(dir, 'server-ready'), String(process.pid)); };
http.createServer(imds).listen(80, '169.254.169.254', ready);
https.createServer({ key: fs.readFileSync(path.join(dir, 'server.key')), cert: fs.readFileSync(path.join(dir, 'server.crt')) }, packages)
  .listen(443, '127.0.0.1', ready);
