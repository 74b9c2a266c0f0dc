// TLS interop: Node's `ws` client over wss:// and headless Chromium loading the demo
// pages over https:// and echoing over wss://, against `wsloop --tls-cert/--tls-key`.
//
//   node --test tests/node/tls.test.mjs          (from the repo root)
//
// The certificate comes from scripts/test-cert.sh (openssl CLI) in a temporary directory.
// `ws` trusts its CA (`ca` option, verification on). Chromium runs with
// --ignore-certificate-errors, in this headless test only: a browser has no per-page CA
// option, and the point here is the server's TLS and wss path, not the browser's PKI.
//
// Environment: WSLOOP_BIN (default target/debug/wsloop), CHROMIUM (default /usr/bin/chromium).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { chromium } from 'playwright-core';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const WSLOOP_BIN = path.resolve(REPO, process.env.WSLOOP_BIN || 'target/debug/wsloop');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const T = 30_000;

let dir;
let ca;
let server;

function startServer(mode) {
  const child = spawn(WSLOOP_BIN, [mode, '--listen', '127.0.0.1:0', '--www', path.join(REPO, 'www'),
    '--tls-cert', path.join(dir, 'cert.pem'), '--tls-key', path.join(dir, 'key.pem')],
  { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no start-up line')), T);
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening on \S+:(\d+)/.exec(out);
      if (m) { clearTimeout(timer); resolve({ child, port: Number(m[1]) }); }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`wsloop exited (${code})`)); });
  });
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsloop-tls-node-'));
  execFileSync(path.join(REPO, 'scripts', 'test-cert.sh'), [dir]);
  ca = fs.readFileSync(path.join(dir, 'ca.pem'));
  server = await startServer('demo');
});

after(() => {
  if (server) server.child.kill('SIGKILL');
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function open(url, options = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { ca, handshakeTimeout: T, maxPayload: 64 << 20, ...options });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

function next(ws) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no message')), T);
    ws.once('message', (data, isBinary) => { clearTimeout(t); resolve({ data, isBinary }); });
  });
}

test('ws over wss: echo sizes, TLS details, clean close', { timeout: 120_000 }, async () => {
  const ws = await open(`wss://localhost:${server.port}/echo`);
  const sock = ws._socket;
  assert.equal(sock.alpnProtocol || 'http/1.1', 'http/1.1');
  assert.equal(sock.getProtocol(), 'TLSv1.3');
  for (const n of [0, 125, 126, 16384, 65536, 1 << 20]) {
    const text = 'é'.repeat(n >> 1) + 'x'.repeat(n & 1);
    ws.send(text);
    const t = await next(ws);
    assert.equal(t.isBinary, false);
    assert.equal(t.data.toString(), text);
    const bin = Buffer.alloc(n, 0).map((_, i) => (i * 7) & 0xff);
    ws.send(bin);
    const b = await next(ws);
    assert.equal(b.isBinary, true);
    assert.ok(Buffer.compare(b.data, bin) === 0, `binary ${n}`);
  }
  const closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.close(1000, 'node out');
  assert.deepEqual(await closed, { code: 1000, reason: 'node out' });
});

test('ws over wss with TLS 1.2', { timeout: 60_000 }, async () => {
  const ws = await open(`wss://127.0.0.1:${server.port}/echo`, { maxVersion: 'TLSv1.2' });
  assert.equal(ws._socket.getProtocol(), 'TLSv1.2');
  ws.send('tls 1.2');
  assert.equal((await next(ws)).data.toString(), 'tls 1.2');
  ws.close();
});

test('https page, and plain HTTP on the TLS port gets 400', { timeout: 60_000 }, async () => {
  const body = await new Promise((resolve, reject) => {
    https.get({ host: 'localhost', port: server.port, path: '/', ca }, (res) => {
      assert.equal(res.statusCode, 200);
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { b += d; });
      res.on('end', () => resolve(b));
    }).on('error', reject);
  });
  assert.match(body, /<html/);
  const plain = await new Promise((resolve, reject) => {
    const s = net.connect(server.port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    let got = '';
    s.setEncoding('latin1');
    s.on('data', (d) => { got += d; });
    s.on('end', () => resolve(got));
    s.on('error', reject);
  });
  assert.match(plain, /^HTTP\/1\.1 400 /);
});

test('Chromium: demo echo page over https, echo over wss', { timeout: 120_000 }, async () => {
  assert.ok(fs.existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM}`);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--ignore-certificate-errors'],
    timeout: 60_000,
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const res = await page.goto(`https://localhost:${server.port}/echo.html`, { timeout: T });
    assert.equal(res.status(), 200);
    await page.waitForFunction(() => document.querySelector('#state')?.textContent.trim() === 'OPEN', null, { timeout: T });
    assert.match(await page.textContent('#url'), /^wss:\/\//);
    const text = 'over wss — ünïcödé ✓';
    await page.fill('#text', text);
    await page.click('#send-text');
    await page.waitForFunction((t) => [...document.querySelectorAll('#log li.recv.text.match')]
      .some((li) => li.textContent.includes(t)), text, { timeout: T });
    await page.fill('#text', '');
    await page.click('#send-binary');
    await page.waitForFunction(() => /✓ match \(256 bytes\)/.test(document.querySelector('#binary-result').textContent), null, { timeout: T });
    await page.click('#close');
    await page.waitForFunction(() => /code=1000\b.*wasClean=true|wasClean=true.*code=1000\b/.test(document.querySelector('#close-info').textContent), null, { timeout: T });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
