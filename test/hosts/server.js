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
 * Every request is appended to <dir>/requests.log as one JSON line.
 */
'use strict';
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
  const tagsDir = path.join(dir, 'tags');
  const tags = fs.existsSync(tagsDir) ? fs.readdirSync(tagsDir) : [];
  if (req.url === '/latest/meta-data/tags/instance') return tags.length ? answer(200, tags.join('\n')) : answer(404);
  const key = req.url.replace(/^\/latest\/meta-data\/tags\/instance\//, '');
  if (key !== req.url && tags.includes(key)) return answer(200, read(path.join('tags', key), ''));
  return answer(404);
}

function packages(req, res) {
  record('https', req);
  const file = path.join(dir, 'www', path.basename(req.url));
  if (!fs.existsSync(file)) { res.writeHead(404); res.end(); return; }
  res.writeHead(200, { 'content-length': fs.statSync(file).size });
  fs.createReadStream(file).pipe(res);
}

let listening = 0;
const ready = () => { if (++listening === 2) fs.writeFileSync(path.join(dir, 'server-ready'), String(process.pid)); };
http.createServer(imds).listen(80, '169.254.169.254', ready);
https.createServer({ key: fs.readFileSync(path.join(dir, 'server.key')), cert: fs.readFileSync(path.join(dir, 'server.crt')) }, packages)
  .listen(443, '127.0.0.1', ready);
