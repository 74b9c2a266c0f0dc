// Smoke test for one WebSocket peer (uses the `ws` client from peers/node/node_modules).
//
//   node peers/smoke.mjs echo ws://127.0.0.1:PORT/
//   node peers/smoke.mjs chat ws://127.0.0.1:PORT/ [--fresh]
//
// echo: text "hello" and a fragmented text come back as text, a 70 000-byte binary
//       message comes back byte-identical as binary, a ping gets a pong with the same
//       payload, and close 1000 is answered with close 1000.
// chat: two clients see each other's join notice (`userN come in!`), a relayed
//       `userN: text` line, a relayed binary message, and the `userN left` notice.
//       With --fresh the server must be new (users numbered 1 and 2).
// Every wait is bounded; exits 0 on success and 1 on failure. Loopback only.
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';

const require = createRequire(new URL('./node/package.json', import.meta.url));
const { WebSocket } = require('ws');

const STEP_TIMEOUT_MS = 5000;
const [mode, url, ...rest] = process.argv.slice(2);
const fresh = rest.includes('--fresh');
if (!['echo', 'chat'].includes(mode) || !url) {
  console.error('usage: node smoke.mjs echo|chat ws://127.0.0.1:PORT/ [--fresh]');
  process.exit(2);
}
if (!/^ws:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(\/|$)/.test(url)) {
  console.error(`smoke.mjs: refusing non-loopback URL ${url}`);
  process.exit(2);
}
// Hard stop whatever happens.
setTimeout(() => fail('overall timeout (30 s)'), 30000).unref();

function fail(msg) {
  console.error(`FAIL [${mode} ${url}]: ${msg}`);
  process.exit(1);
}
function ok(msg) {
  console.log(`  ok   ${msg}`);
}
function check(cond, msg) {
  if (!cond) fail(msg);
  ok(msg);
}

/** A client whose events are queued so that each test step can await the next one. */
class Client {
  constructor(label) {
    this.label = label;
    this.events = [];
    this.waiters = [];
    this.ws = new WebSocket(url, { perMessageDeflate: false });
    this.ws.on('message', (data, isBinary) => this.push({ type: 'message', data: Buffer.from(data), isBinary }));
    this.ws.on('pong', (data) => this.push({ type: 'pong', data: Buffer.from(data) }));
    this.ws.on('close', (code, reason) => this.push({ type: 'close', code, reason: reason.toString() }));
    this.ws.on('error', (err) => this.push({ type: 'error', err }));
  }
  push(ev) {
    const w = this.waiters.shift();
    if (w) w(ev);
    else this.events.push(ev);
  }
  opened() {
    return new Promise((resolve, reject) => {
      if (this.ws.readyState === WebSocket.OPEN) return resolve();
      const t = setTimeout(() => reject(new Error(`${this.label}: connect timeout`)), STEP_TIMEOUT_MS);
      this.ws.once('open', () => { clearTimeout(t); resolve(); });
      this.ws.once('error', (e) => { clearTimeout(t); reject(new Error(`${this.label}: ${e.message}`)); });
    });
  }
  next(what) {
    if (this.events.length) return Promise.resolve(this.events.shift());
    return new Promise((resolve) => {
      const t = setTimeout(() => fail(`${this.label}: timed out waiting for ${what}`), STEP_TIMEOUT_MS);
      this.waiters.push((ev) => { clearTimeout(t); resolve(ev); });
    });
  }
  async expectText(expected) {
    const ev = await this.next(`text ${JSON.stringify(expected)}`);
    check(ev.type === 'message' && !ev.isBinary && ev.data.toString('utf8') === expected,
      `${this.label}: got text ${JSON.stringify(expected)}` + (ev.type === 'message' && ev.data.toString('utf8') === expected ? '' : ` (got ${describe(ev)})`));
  }
  async expectTextMatching(re, what) {
    const ev = await this.next(what);
    const text = ev.type === 'message' && !ev.isBinary ? ev.data.toString('utf8') : null;
    const m = text === null ? null : re.exec(text);
    check(m !== null, `${this.label}: got ${what}` + (m ? ` ${JSON.stringify(text)}` : ` (got ${describe(ev)})`));
    return m;
  }
  async expectBinary(expected) {
    const ev = await this.next(`binary (${expected.length} bytes)`);
    check(ev.type === 'message' && ev.isBinary && ev.data.equals(expected),
      `${this.label}: got identical binary message (${expected.length} bytes)` + (ev.type === 'message' && ev.isBinary && ev.data.equals(expected) ? '' : ` (got ${describe(ev)})`));
  }
}

function describe(ev) {
  if (ev.type === 'message') {
    return `${ev.isBinary ? 'binary' : 'text'} ${ev.data.length} bytes ${JSON.stringify(ev.data.subarray(0, 60).toString('utf8'))}`;
  }
  if (ev.type === 'close') return `close ${ev.code} ${JSON.stringify(ev.reason)}`;
  if (ev.type === 'error') return `error ${ev.err.message}`;
  return ev.type;
}

async function testEcho() {
  const c = new Client('client');
  await c.opened();
  ok('connected (handshake ok)');

  c.ws.send('hello');
  await c.expectText('hello');

  const big = randomBytes(70000);
  c.ws.send(big, { binary: true });
  await c.expectBinary(big);

  // A text message in two fragments must come back as one text message.
  c.ws.send('frag', { binary: false, fin: false });
  c.ws.send('mented ✓', { binary: false, fin: true });
  await c.expectText('fragmented ✓');

  c.ws.ping(Buffer.from('smoke-ping'));
  const pong = await c.next('pong');
  check(pong.type === 'pong' && pong.data.toString() === 'smoke-ping', `client: ping answered by pong with the same payload`);

  c.ws.close(1000, 'bye');
  const closed = await c.next('close reply');
  check(closed.type === 'close' && closed.code === 1000, `client: close 1000 answered (got close ${closed.code})`);
}

async function testChat() {
  const a = new Client('A');
  await a.opened();
  const ma = await a.expectTextMatching(/^user(\d+) come in!$/, 'own join notice');
  const idA = Number(ma[1]);

  const b = new Client('B');
  await b.opened();
  const mb = await b.expectTextMatching(/^user(\d+) come in!$/, 'own join notice');
  const idB = Number(mb[1]);
  check(idB === idA + 1, `users numbered in join order (A=user${idA}, B=user${idB})`);
  if (fresh) check(idA === 1, 'numbering starts at 1');
  await a.expectText(`user${idB} come in!`);

  a.ws.send('hi from A ✓');
  await a.expectText(`user${idA}: hi from A ✓`);
  await b.expectText(`user${idA}: hi from A ✓`);

  b.ws.send('hi from B');
  await a.expectText(`user${idB}: hi from B`);
  await b.expectText(`user${idB}: hi from B`);

  const blob = randomBytes(70000);
  b.ws.send(blob, { binary: true });
  await a.expectBinary(blob);
  await b.expectBinary(blob);

  b.ws.close(1000);
  const bc = await b.next('close reply');
  check(bc.type === 'close' && bc.code === 1000, `B: close 1000 answered (got close ${bc.code})`);
  await a.expectText(`user${idB} left`);

  a.ws.close(1000);
  const ac = await a.next('close reply');
  check(ac.type === 'close' && ac.code === 1000, `A: close 1000 answered (got close ${ac.code})`);
}

try {
  if (mode === 'echo') await testEcho();
  else await testChat();
  console.log(`PASS [${mode} ${url}]`);
  process.exit(0);
} catch (e) {
  fail(e.message);
}
