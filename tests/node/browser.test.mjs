// Headless-browser tests for the demo pages in www/, against the real wsloop binary.
//
//   node --test tests/node/browser.test.mjs          (from the repo root)
//
// Environment:
//   WSLOOP_BIN      server binary (default: target/debug/wsloop, relative to the repo root)
//   CHROMIUM        chromium executable (default: /usr/bin/chromium; never downloaded)
//   SCREENSHOT_DIR  where PNG screenshots go (default: <os tmpdir>/wsloop-screenshots)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const WWW = path.join(REPO, 'www');
const WSLOOP_BIN = path.resolve(REPO, process.env.WSLOOP_BIN || 'target/debug/wsloop');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT_DIR = path.resolve(process.env.SCREENSHOT_DIR || path.join(os.tmpdir(), 'wsloop-screenshots'));
const WAIT = 15_000;          // every waitFor… uses this
const TEST_TIMEOUT = 120_000; // hard stop per test so a hang can't stall CI

const children = new Set();   // running server processes, killed on exit no matter what
process.on('exit', () => { for (const c of children) try { c.kill('SIGKILL'); } catch {} });

let browser;
const screenshots = [];

// ---------------------------------------------------------------------------
// server process

/**
 * Start `wsloop <mode> --listen <listen> --www www/ <flags>` and wait for its
 * "wsloop <mode> listening on <ip>:<port>" line on stdout.
 */
function startServer(mode, listen = '127.0.0.1:0', ...flags) {
  if (!fs.existsSync(WSLOOP_BIN)) {
    throw new Error(`wsloop binary not found at ${WSLOOP_BIN} (build it with \`cargo build\` or set WSLOOP_BIN)`);
  }
  const child = spawn(WSLOOP_BIN, [mode, '--listen', listen, '--www', WWW, ...flags], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  // Keep draining both pipes for the whole run so the server never blocks on a full pipe.
  child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-20_000); });

  const exited = new Promise((resolve) => child.once('exit', (code, signal) => {
    children.delete(child);
    resolve({ code, signal });
  }));

  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`wsloop ${mode}: no "listening on" line within ${WAIT} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, WAIT);
    child.once('error', (err) => { clearTimeout(timer); reject(err); });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`wsloop ${mode} exited early (code=${code} signal=${signal})\nstdout: ${stdout}\nstderr: ${stderr}`));
    });
    child.stdout.on('data', (d) => {
      stdout = (stdout + d).slice(-20_000);
      const m = /wsloop (\S+) listening on (\S+):(\d+)\s*$/m.exec(stdout);
      if (m) {
        clearTimeout(timer);
        resolve({ mode: m[1], host: m[2], port: Number(m[3]) });
      }
    });
  });

  const server = {
    child,
    get stderr() { return stderr; },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
    },
  };

  return ready.then(
    (info) => {
      assert.equal(info.mode, mode, 'mode in the "listening on" line');
      return Object.assign(server, info, { base: `http://127.0.0.1:${info.port}` });
    },
    async (err) => { await server.stop(); throw err; },
  );
}

// ---------------------------------------------------------------------------
// page helpers (playwright-core has no `expect`, so wait on DOM predicates)

/** Wait until the trimmed textContent of `sel` equals `text` (string) or matches it (RegExp). */
async function waitText(page, sel, text) {
  const arg = text instanceof RegExp
    ? { sel, src: text.source, flags: text.flags }
    : { sel, exact: text };
  try {
    await page.waitForFunction(({ sel, exact, src, flags }) => {
      const el = document.querySelector(sel);
      if (!el) return false;
      const t = el.textContent.trim();
      return exact !== undefined ? t === exact : new RegExp(src, flags).test(t);
    }, arg, { timeout: WAIT, polling: 50 });
  } catch (err) {
    const actual = await page.locator(sel).first().textContent().catch(() => '<missing>');
    throw new Error(`${sel}: waited for ${text} but it reads ${JSON.stringify(actual)}\n${err.message}`);
  }
}

/** Wait for an element matching `sel` whose trimmed text equals `text` (string) or matches it (RegExp). */
async function waitItem(page, sel, text) {
  const arg = text instanceof RegExp
    ? { sel, src: text.source, flags: text.flags }
    : { sel, exact: text };
  try {
    await page.waitForFunction(({ sel, exact, src, flags }) =>
      [...document.querySelectorAll(sel)].some((el) => {
        const t = el.textContent.trim();
        return exact !== undefined ? t === exact : new RegExp(src, flags).test(t);
      }),
    arg, { timeout: WAIT, polling: 50 });
  } catch (err) {
    const items = await page.locator(sel).allTextContents().catch(() => []);
    const container = sel.split(' ')[0];   // e.g. #messages: show everything in it
    const all = await page.locator(container).first().innerText().catch(() => '<missing>');
    throw new Error(`no ${sel} reading ${text}; matching items: ${JSON.stringify(items)}; ` +
      `${container} contains: ${JSON.stringify(all)}\n${err.message}`);
  }
}

const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Record uncaught page errors and console errors so a test can assert there were none. */
function watchErrors(page, name) {
  const errors = [];
  page.on('pageerror', (err) => errors.push(`${name}: pageerror: ${err.message}`));
  page.on('console', (msg) => { if (msg.type() === 'error') errors.push(`${name}: console: ${msg.text()}`); });
  page.on('response', (res) => { if (res.status() >= 400) errors.push(`${name}: HTTP ${res.status()} ${res.url()}`); });
  return errors;
}

async function shot(page, name) {
  const file = path.join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  screenshots.push(file);
  return file;
}

async function open(url, viewport, name) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  livePages.push({ page, name });
  const errors = watchErrors(page, name);
  const res = await page.goto(url, { timeout: WAIT });
  assert.ok(res, `no response for ${url}`);
  assert.equal(res.status(), 200, `GET ${url}`);
  return { context, page, errors };
}

// Pages opened by the running test; on failure each still-open one is screenshotted.
let livePages = [];

/** node:test `test` plus failure screenshots (FAILED-<page>.png) for debugging. */
function browserTest(name, fn) {
  test(name, { timeout: TEST_TIMEOUT }, async (t) => {
    livePages = [];
    try {
      await fn(t);
    } catch (err) {
      for (const { page, name: pageName } of livePages) {
        if (page.isClosed()) continue;
        const file = await shot(page, `FAILED-${pageName}`).catch(() => null);
        if (file) t.diagnostic(`failure screenshot: ${file}`);
      }
      throw err;
    }
  });
}

const DESKTOP = { width: 1100, height: 760 };
const PHONE = { width: 400, height: 820 };

// ---------------------------------------------------------------------------

before(async () => {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM}. Install Debian's chromium (apt-get install -y chromium) ` +
      'or point CHROMIUM at a chromium executable. This test never downloads a browser.');
  }
  fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
  console.log(`screenshots: ${SCREENSHOT_DIR}`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 60_000,
  });
});

after(async () => {
  if (browser) await browser.close();
  for (const c of children) c.kill('SIGKILL');
  if (screenshots.length) {
    console.log(`screenshots saved in ${SCREENSHOT_DIR}:`);
    for (const f of screenshots) console.log(`  ${path.basename(f)}`);
  }
});

browserTest('chat page: two users join, chat, and one leaves', async (t) => {
  const srv = await startServer('chat');
  t.after(() => srv.stop());
  t.diagnostic(`wsloop chat on ${srv.base}`);

  // Page 1 (desktop) joins first and becomes user1.
  const a = await open(`${srv.base}/`, DESKTOP, 'chat1');
  t.after(() => a.context.close());
  assert.match(await a.page.title(), /wsloop/i);
  await waitText(a.page, '#state', 'OPEN');
  await waitItem(a.page, '#messages li.notice', 'user1 come in!');
  assert.equal(await a.page.isEnabled('#input'), true, '#input enabled while OPEN');
  assert.equal(await a.page.isEnabled('#send'), true, '#send enabled while OPEN');

  // Page 2 (phone-sized, separate context) joins as user2.
  const b = await open(`${srv.base}/`, PHONE, 'chat2');
  t.after(() => b.context.close());
  await waitText(b.page, '#state', 'OPEN');
  await waitItem(b.page, '#messages li.notice', 'user2 come in!');
  await waitItem(a.page, '#messages li.notice', 'user2 come in!');

  // Whitespace-only input is not sent.
  await a.page.fill('#input', '   ');
  await a.page.press('#input', 'Enter');

  // Page 1 types and presses Enter; both pages get "user1: <text>".
  const text = 'hello from page 1 — grüße, ½ €';
  await a.page.fill('#input', text);
  await a.page.press('#input', 'Enter');
  await waitItem(a.page, '#messages li', `user1: ${text}`);
  await waitItem(b.page, '#messages li', `user1: ${text}`);
  assert.equal(await a.page.inputValue('#input'), '', 'input cleared after sending');

  // And a reply from page 2 via the Send button.
  await b.page.fill('#input', 'hi user1, this is page 2');
  await b.page.click('#send');
  await waitItem(a.page, '#messages li', 'user2: hi user1, this is page 2');
  await waitItem(b.page, '#messages li', 'user2: hi user1, this is page 2');

  const lines = await a.page.locator('#messages li').allTextContents();
  assert.ok(!lines.some((l) => /^user1:\s*$/.test(l.trim())), `blank message was sent: ${JSON.stringify(lines)}`);
  // Chat lines are not styled as notices.
  assert.equal(await a.page.locator('#messages li.notice', { hasText: `user1: ${text}` }).count(), 0);
  assert.match((await a.page.textContent('#buffered')).trim(), /^\d+$/, '#buffered shows a number');

  await shot(b.page, 'chat-page2-phone');

  // Page 2 leaves; page 1 is told.
  await b.context.close();
  await waitItem(a.page, '#messages li.notice', 'user2 left');
  await waitText(a.page, '#state', 'OPEN');
  await shot(a.page, 'chat-page1');

  assert.deepEqual([...a.errors, ...b.errors], [], 'no page errors, console errors or HTTP errors');
});

browserTest('chat page: shows CLOSED, reconnects with back-off when the server comes back', async (t) => {
  let srv = await startServer('chat');
  t.after(() => srv.stop());
  const port = srv.port;

  const a = await open(`${srv.base}/`, DESKTOP, 'reconnect');
  t.after(() => a.context.close());
  await waitText(a.page, '#state', 'OPEN');
  await waitItem(a.page, '#messages li.notice', 'user1 come in!');

  await srv.stop();
  await waitText(a.page, '#state', 'CLOSED');
  await waitText(a.page, '#reconnect', /reconnecting in \d+(\.\d+)? s/);
  assert.equal(await a.page.isDisabled('#input'), true, '#input disabled while not OPEN');
  assert.equal(await a.page.isDisabled('#send'), true, '#send disabled while not OPEN');
  await shot(a.page, 'chat-reconnecting');

  // Same port again; the page's back-off timer finds it (≤ 10 s between tries).
  srv = await startServer('chat', `127.0.0.1:${port}`);
  await waitText(a.page, '#state', 'OPEN');
  // A fresh server numbers from 1 again; this page's second join notice.
  await a.page.waitForFunction(() =>
    [...document.querySelectorAll('#messages li.notice')]
      .filter((li) => li.textContent.trim() === 'user1 come in!').length >= 2,
  null, { timeout: WAIT });
  assert.doesNotMatch((await a.page.textContent('#reconnect')).trim(), /reconnecting in/);
});

browserTest('echo page: subprotocol, text and binary round trips, clean close', async (t) => {
  const srv = await startServer('echo');
  t.after(() => srv.stop());
  t.diagnostic(`wsloop echo on ${srv.base}`);

  const e = await open(`${srv.base}/echo.html`, DESKTOP, 'echo');
  t.after(() => e.context.close());
  const { page } = e;
  assert.match(await page.title(), /wsloop/i);

  await waitText(page, '#state', 'OPEN');
  await waitText(page, '#protocol', 'com.kaazing.echo');
  assert.equal(await page.evaluate(() => document.getElementById('extensions').textContent), '',
    'ws.extensions is ""');

  // Text round trip.
  const text = 'echo me — ünïcödé ✓';
  await page.fill('#text', text);
  await page.click('#send-text');
  await waitItem(page, '#log li.recv.text.match', new RegExp(escapeRe(`text ${JSON.stringify(text)}`)));

  // Binary round trip: UTF-8 bytes of the field.
  await page.click('#send-binary');
  await page.locator('#log li.recv.binary.match').first().waitFor({ timeout: WAIT });
  await waitText(page, '#binary-result', /^✓ match/);

  // Binary round trip: bytes 0..255 when the field is empty.
  await page.fill('#text', '');
  await page.click('#send-binary');
  await waitText(page, '#binary-result', '✓ match (256 bytes)');
  assert.equal(await page.locator('#log li.recv.binary.match').count(), 2);
  assert.match(await page.locator('#log li.recv.binary.match').nth(1).textContent(), /00 01 02 03/);
  assert.equal(await page.locator('#log li.mismatch').count(), 0, 'no mismatched echoes');

  await page.fill('#text', 'Hello, wsloop!');
  await shot(page, 'echo');

  // Close → onclose reports the code, reason and a clean close.
  await page.click('#close');
  await waitText(page, '#state', 'CLOSED');
  await waitText(page, '#close-info', /code=1000\b/);
  const info = (await page.textContent('#close-info')).trim();
  assert.match(info, /wasClean=true/);
  assert.match(info, /reason=bye\b/);
  assert.equal(await page.isDisabled('#send-text'), true);
  await shot(page, 'echo-closed');

  // Connect again.
  await page.click('#connect');
  await waitText(page, '#state', 'OPEN');
  await waitText(page, '#protocol', 'com.kaazing.echo');
  // 3- and 4-byte UTF-8 (after the screenshots: the CI box may lack CJK/emoji fonts).
  const again = 'again 你好 🚀';
  await page.fill('#text', again);
  await page.click('#send-text');
  await waitItem(page, '#log li.recv.text.match', new RegExp(escapeRe(`text ${JSON.stringify(again)}`)));
  await page.click('#send-binary');
  await waitItem(page, '#binary-result', `✓ match (${Buffer.byteLength(again)} bytes)`);

  assert.deepEqual(e.errors, [], 'no page errors, console errors or HTTP errors');
});

browserTest('demo --deflate: Chromium negotiates permessage-deflate and echoes a large compressible message', async (t) => {
  const srv = await startServer('demo', '127.0.0.1:0', '--deflate');
  t.after(() => srv.stop());
  t.diagnostic(`wsloop demo --deflate on ${srv.base}`);

  const e = await open(`${srv.base}/echo.html`, DESKTOP, 'echo-deflate');
  t.after(() => e.context.close());
  const { page } = e;
  await waitText(page, '#state', 'OPEN');
  // Chromium offers `permessage-deflate; client_max_window_bits`; the page shows ws.extensions.
  await waitText(page, '#extensions', /^permessage-deflate\b/);
  const ext = (await page.textContent('#extensions')).trim();
  assert.match(ext, /server_no_context_takeover/);
  assert.match(ext, /client_no_context_takeover/);

  // A 64 KiB JSON-like text through the page's own form, compared by the page.
  const big = await page.evaluate(() => {
    let s = '';
    for (let i = 0; s.length < 65536; i++) s += `{"id":${i},"user":"user${i % 7}","text":"message ${i % 13}"},`;
    return s.slice(0, 65536);
  });
  await page.fill('#text', big);
  await page.click('#send-text');
  await page.locator('#log li.recv.text.match').first().waitFor({ timeout: WAIT });
  await page.click('#send-binary');
  await waitText(page, '#binary-result', '✓ match (65536 bytes)');
  assert.equal(await page.locator('#log li.mismatch').count(), 0, 'no mismatched echoes');

  // And straight from page script, a 1 MiB message on a second socket (compressed both ways).
  const result = await page.evaluate(async (url) => {
    const ws = new WebSocket(url);
    await new Promise((res, rej) => { ws.onopen = res; ws.onerror = () => rej(new Error('ws error')); });
    let s = '';
    for (let i = 0; s.length < (1 << 20); i++) s += `{"n":${i % 1000},"k":"value ${i % 17}"},`;
    s = s.slice(0, 1 << 20);
    const echoed = await new Promise((res) => { ws.onmessage = (ev) => res(ev.data); ws.send(s); });
    ws.close(1000);
    return { extensions: ws.extensions, same: echoed === s, len: echoed.length };
  }, `ws://127.0.0.1:${srv.port}/echo`);
  assert.match(result.extensions, /^permessage-deflate/);
  assert.deepEqual({ same: result.same, len: result.len }, { same: true, len: 1 << 20 });
  await shot(page, 'echo-deflate');
  assert.deepEqual(e.errors, [], 'no page errors, console errors or HTTP errors');
});
