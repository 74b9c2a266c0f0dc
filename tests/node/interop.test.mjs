// Interop: the Node `ws` client (a library we did not write) against wsloop.
//
//   node --test tests/node/interop.test.mjs
//
// The server binary is $WSLOOP_BIN (default <repo>/target/debug/wsloop); every server is
// started on an ephemeral port by this file and killed at the end.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const WSLOOP_BIN = process.env.WSLOOP_BIN || join(REPO, 'target', 'debug', 'wsloop');
const T = 30_000; // every wait is bounded by this (loaded machine, debug build)
const MiB = 1 << 20;
const SIZES = [0, 125, 126, 65535, 65536, MiB];
const BIG = 16 * MiB - 1; // just under the default --max-message-size

const servers = [];

/** Starts `wsloop <mode> --listen 127.0.0.1:0 ...`; resolves with its ws:// URL. */
function startServer(mode, ...flags) {
  assert.ok(existsSync(WSLOOP_BIN), `no server binary at ${WSLOOP_BIN} (cargo build?)`);
  const proc = spawn(WSLOOP_BIN, [mode, '--listen', '127.0.0.1:0', '--no-www', ...flags], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' },
  });
  servers.push(proc);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no start-up line')), T);
    proc.on('exit', (code) => reject(new Error(`wsloop exited (${code})`)));
    createInterface({ input: proc.stdout }).once('line', (line) => {
      clearTimeout(timer);
      const m = line.match(new RegExp(`^wsloop ${mode} listening on (\\S+)$`));
      if (!m) return reject(new Error(`unexpected start-up line ${line}`));
      resolve({ proc, url: `ws://${m[1]}/` });
    });
  });
}

function killServers() {
  for (const p of servers) {
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  }
}
process.on('exit', killServers);

function withTimeout(promise, what, ms = T) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Opens a client and queues everything it receives, so no message is missed between
 * awaits. `c.next()` resolves with `{ data, isBinary }`; `c.closed` with the close event.
 */
function open(url, protocols, options = {}) {
  const ws = new WebSocket(url, protocols, { maxPayload: 64 * MiB, ...options });
  const queue = [];
  const waiters = [];
  ws.on('message', (data, isBinary) => {
    const m = { data, isBinary };
    const w = waiters.shift();
    if (w) w(m);
    else queue.push(m);
  });
  const closed = new Promise((resolve) => ws.addEventListener('close', resolve));
  const c = {
    ws,
    closed,
    // The 101 response's headers (lowercase names), once open.
    upgradeHeaders: null,
    next(what = 'message') {
      if (queue.length) return Promise.resolve(queue.shift());
      return withTimeout(new Promise((resolve) => waiters.push(resolve)), what);
    },
    async text(what) {
      const m = await c.next(what);
      assert.equal(m.isBinary, false, `${what}: expected text`);
      return m.data.toString('utf8');
    },
    async close(code, reason) {
      ws.close(code, reason);
      return withTimeout(closed, 'close');
    },
  };
  ws.once('upgrade', (res) => {
    c.upgradeHeaders = res.headers;
  });
  return withTimeout(
    new Promise((resolve, reject) => {
      ws.once('open', () => resolve(c));
      ws.once('error', reject);
    }),
    `open ${url}`,
  );
}

/** A string of exactly `n` UTF-8 bytes with multi-byte characters in it. */
function textOf(n) {
  if (n < 9) return 'x'.repeat(n);
  const s = '€𝄞é' + 'x'.repeat(n - 9);
  assert.equal(Buffer.byteLength(s), n);
  return s;
}

function bytesOf(n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + 3) & 0xff;
  return b;
}

describe('echo', () => {
  let url;
  let url1000;
  before(async () => {
    ({ url } = await startServer('echo'));
    ({ url: url1000 } = await startServer('echo', '--max-message-size', '1000'));
  });
  after(killServers);

  test('text and binary at every length class', async () => {
    const c = await open(url);
    for (const n of [...SIZES, BIG]) {
      const t = textOf(n);
      c.ws.send(t);
      const gotText = await c.next(`text ${n}`);
      assert.equal(gotText.isBinary, false);
      assert.ok(gotText.data.toString('utf8') === t, `text ${n}: got ${gotText.data.length}`);
      const b = bytesOf(n);
      c.ws.send(b);
      const gotBin = await c.next(`binary ${n}`);
      assert.equal(gotBin.isBinary, true);
      assert.ok(Buffer.compare(gotBin.data, b) === 0, `binary ${n}: got ${gotBin.data.length}`);
    }
    const ev = await c.close(1000);
    assert.equal(ev.code, 1000);
    assert.equal(ev.wasClean, true);
  });

  test('fragmented sends, UTF-8 split across fragments, ping between fragments', async () => {
    const c = await open(url);
    // A text message whose 4-byte and 3-byte characters are split across fragments.
    const whole = Buffer.from('a𝄞b€c', 'utf8');
    const cuts = [0, 2, 4, 6, 7, whole.length];
    for (let i = 0; i + 1 < cuts.length; i++) {
      c.ws.send(whole.subarray(cuts[i], cuts[i + 1]), {
        binary: false,
        fin: i + 2 === cuts.length,
      });
      if (i === 1) c.ws.ping(Buffer.from('between'));
    }
    const pong = new Promise((resolve) => c.ws.once('pong', resolve));
    assert.equal(await c.text('fragmented text'), 'a𝄞b€c');
    assert.equal((await withTimeout(pong, 'pong')).toString(), 'between');

    // Binary: an empty first fragment, a large middle one, a small last one.
    const parts = [Buffer.alloc(0), bytesOf(70000), Buffer.from([0xff, 0xfe])];
    parts.forEach((p, i) => c.ws.send(p, { binary: true, fin: i === parts.length - 1 }));
    const m = await c.next('fragmented binary');
    assert.equal(m.isBinary, true);
    assert.ok(Buffer.compare(m.data, Buffer.concat(parts)) === 0);

    // Many small fragments.
    for (let i = 0; i < 200; i++) c.ws.send(`${i},`, { fin: i === 199 });
    assert.equal(await c.text('200 fragments'), Array.from({ length: 200 }, (_, i) => `${i},`).join(''));
    c.ws.send('after');
    assert.equal(await c.text('after'), 'after');
    assert.equal((await c.close(1000)).wasClean, true);
  });

  test('ping/pong with payload', async () => {
    const c = await open(url);
    for (const p of [Buffer.alloc(0), Buffer.from('p'), bytesOf(125)]) {
      const pong = new Promise((resolve) => c.ws.once('pong', resolve));
      c.ws.ping(p);
      assert.ok(Buffer.compare(await withTimeout(pong, 'pong'), p) === 0);
    }
    // Ten in a row: ten pongs, in order.
    const got = [];
    const all = new Promise((resolve) =>
      c.ws.on('pong', (d) => {
        got.push(d.toString());
        if (got.length === 10) resolve();
      }),
    );
    for (let i = 0; i < 10; i++) c.ws.ping(`ping-${i}`);
    await withTimeout(all, '10 pongs');
    assert.deepEqual(got, Array.from({ length: 10 }, (_, i) => `ping-${i}`));
    assert.equal((await c.close(1000)).wasClean, true);
  });

  test('close code and reason seen on both sides', async () => {
    for (const [code, reason] of [
      [1000, ''],
      [1001, 'going'],
      [4001, 'custom reason é'],
      [3000, 'r'.repeat(123)],
    ]) {
      const c = await open(url);
      c.ws.send('x');
      assert.equal(await c.text(), 'x');
      // ws reports the code and reason of the close frame it received: the server's echo.
      const ev = await c.close(code, reason);
      assert.equal(ev.code, code);
      assert.equal(ev.reason, reason);
      assert.equal(ev.wasClean, true, 'close frames both ways');
      assert.equal(c.ws.readyState, WebSocket.CLOSED);
    }
  });

  test('server-initiated close: 1009 for an oversized message', async () => {
    const c = await open(url1000);
    c.ws.send('a'.repeat(1000));
    assert.equal(await c.text(), 'a'.repeat(1000));
    c.ws.send('a'.repeat(1001));
    const ev = await withTimeout(c.closed, 'server close');
    assert.equal(ev.code, 1009);
    assert.equal(ev.wasClean, true);
  });

  test('subprotocol negotiation', async () => {
    for (const [offered, want] of [
      [['com.kaazing.echo'], 'com.kaazing.echo'],
      [['echo'], 'echo'],
      [['echo', 'com.kaazing.echo'], 'com.kaazing.echo'], // server preference
      [['nope', 'com.kaazing.echo'], 'com.kaazing.echo'],
      [[], ''],
    ]) {
      const c = await open(url, offered);
      assert.equal(c.ws.protocol, want, `offered ${offered}`);
      c.ws.send('p');
      assert.equal(await c.text(), 'p');
      await c.close(1000);
    }
    // Only `nope` offered: the server picks none and sends no Sec-WebSocket-Protocol.
    // (ws then fails the connection itself, "Server sent no subprotocol"; the RFC lets a
    // client decide that.)
    const ws = new WebSocket(url, ['nope']);
    const headers = new Promise((resolve) => ws.once('upgrade', (res) => resolve(res.headers)));
    const err = new Promise((resolve) => ws.once('error', resolve));
    const h = await withTimeout(headers, 'upgrade response');
    assert.equal(h['sec-websocket-protocol'], undefined);
    assert.equal(h.upgrade.toLowerCase(), 'websocket');
    assert.match((await withTimeout(err, 'ws error')).message, /no subprotocol/);
  });
});

describe('chat', () => {
  let url;
  before(async () => {
    // One global order across clients; a per-reader buffer that holds BIG (the chat
    // refuses messages bigger than --max-backpressure with 1009).
    ({ url } = await startServer('chat', '--threads', '1', '--max-backpressure', '32MiB'));
  });
  after(killServers);

  /** Joins; resolves with [client, N] from its own `userN come in!`. */
  async function join() {
    const c = await open(url);
    const first = await c.text('own join notice');
    const m = first.match(/^user(\d+) come in!$/);
    assert.ok(m, first);
    return [c, Number(m[1])];
  }

  test('join, text and binary at every length class, leave', async () => {
    const [a, na] = await join();
    const [b, nb] = await join();
    assert.equal(await a.text(), `user${nb} come in!`);
    for (const n of [...SIZES, BIG]) {
      const t = textOf(n);
      a.ws.send(t);
      for (const c of [a, b]) {
        const got = await c.text(`text ${n}`);
        assert.ok(got === `user${na}: ${t}`, `text ${n}: got ${got.length}`);
      }
      const d = bytesOf(n);
      b.ws.send(d);
      for (const c of [a, b]) {
        const m = await c.next(`binary ${n}`);
        assert.equal(m.isBinary, true);
        assert.ok(Buffer.compare(m.data, d) === 0, `binary ${n}: got ${m.data.length}`);
      }
    }
    b.ws.send('fr', { fin: false });
    b.ws.send('ag', { fin: true });
    for (const c of [a, b]) assert.equal(await c.text(), `user${nb}: frag`);
    assert.equal((await b.close(1000, 'bye')).wasClean, true);
    assert.equal(await a.text(), `user${nb} left`);
    await a.close(1000);
  });

  test('three clients sending at once see one order', async () => {
    const joined = [];
    for (let i = 0; i < 3; i++) {
      joined.push(await join());
      // Everyone already in sees the new join notice.
      for (const [c] of joined.slice(0, -1)) {
        assert.equal(await c.text(), `user${joined.at(-1)[1]} come in!`);
      }
    }
    const count = 100;
    for (let i = 0; i < count; i++) for (const [c] of joined) c.ws.send(`m${i}`);
    const seqs = [];
    for (const [c] of joined) {
      const seq = [];
      for (let i = 0; i < count * joined.length; i++) seq.push(await c.text());
      seqs.push(seq);
    }
    assert.deepEqual(seqs[1], seqs[0]);
    assert.deepEqual(seqs[2], seqs[0]);
    for (const [, n] of joined) {
      const mine = seqs[0].filter((m) => m.startsWith(`user${n}: `));
      assert.deepEqual(mine, Array.from({ length: count }, (_, i) => `user${n}: m${i}`));
    }
    const [[first, n1], ...rest] = joined;
    await first.close(1000);
    for (const [c] of rest) assert.equal(await c.text(), `user${n1} left`);
    for (const [c] of rest) await c.close(1000);
  });
});

// permessage-deflate (RFC 7692) with Node's own implementation (zlib) on both ends of each
// message: the client compresses every message (threshold 0), the server compresses its
// echoes of 128 bytes and more (--deflate-min-size default).
describe('permessage-deflate', () => {
  /** JSON-like text of about `n` bytes. */
  function jsonOf(n) {
    let s = '';
    for (let i = 0; s.length < n; i++) s += `{"id":${i},"user":"usér${i % 7}","text":"msg ${i % 13} €"},`;
    return s.slice(0, n);
  }
  function randomBytes(n, seed) {
    const b = Buffer.alloc(n);
    let x = seed >>> 0 || 1;
    for (let i = 0; i < n; i++) {
      x ^= x << 13; x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5; x >>>= 0;
      b[i] = x & 0xff;
    }
    return b;
  }
  /** `Sec-WebSocket-Extensions` → { param: value | true } for its single permessage-deflate. */
  function answer(c) {
    const v = c.upgradeHeaders['sec-websocket-extensions'];
    assert.ok(v, 'no Sec-WebSocket-Extensions in the 101');
    const [name, ...params] = v.split(';').map((p) => p.trim());
    assert.equal(name, 'permessage-deflate');
    const out = {};
    for (const p of params) {
      const [k, val] = p.split('=');
      assert.ok(!(k in out), `${k} twice in ${v}`);
      out[k] = val === undefined ? true : val;
    }
    return out;
  }

  const servers = {};
  before(async () => {
    servers.shared = (await startServer('echo', '--deflate')).url;
    servers.dedicated = (await startServer('echo', '--deflate', '--deflate-context-takeover')).url;
    servers.dedicatedW10 = (
      await startServer('echo', '--deflate', '--deflate-context-takeover', '--deflate-window-bits', '10')
    ).url;
  });
  after(killServers);

  // Node ws throws if the server answers client_no_context_takeover while the option is
  // explicitly `false`, so "with context takeover" leaves it undefined (RFC 7692 §7.1.1.2
  // lets the server add it).
  const offers = [
    { name: 'context takeover both ways', o: {} },
    { name: 'no context takeover', o: { serverNoContextTakeover: true, clientNoContextTakeover: true } },
    { name: 'windows 10/10', o: { serverMaxWindowBits: 10, clientMaxWindowBits: 10 } },
    { name: 'server 9, client no takeover', o: { serverMaxWindowBits: 9, clientNoContextTakeover: true } },
    { name: 'client window 15, server no takeover', o: { clientMaxWindowBits: 15, serverNoContextTakeover: true } },
  ];

  for (const [kind, shared, bits] of [
    ['shared', true, 15],
    ['dedicated', false, 15],
    ['dedicatedW10', false, 10],
  ]) {
    for (const { name, o } of offers) {
      test(`${kind} server, ${name}: negotiated parameters and echoes both ways`, async () => {
        const c = await open(servers[kind], undefined, { perMessageDeflate: { ...o, threshold: 0 } });
        assert.equal(c.ws.extensions, 'permessage-deflate');
        const got = answer(c);
        // What RFC 7692 §7.1 requires of the answer, with wsloop's choices.
        const want = {};
        if (o.serverNoContextTakeover || shared) want.server_no_context_takeover = true;
        if (o.clientNoContextTakeover || shared) want.client_no_context_takeover = true;
        if (o.serverMaxWindowBits) want.server_max_window_bits = String(Math.min(o.serverMaxWindowBits, bits));
        else if (bits < 15) want.server_max_window_bits = String(bits);
        // ws offers client_max_window_bits (no value) by default.
        const cmwb = o.clientMaxWindowBits ?? 15;
        if (o.clientMaxWindowBits || Math.min(cmwb, bits) < 15) {
          want.client_max_window_bits = String(Math.min(cmwb, bits));
        }
        assert.deepEqual(got, want);

        const sock = c.ws._socket;
        const sizes = [0, 1, 127, 128, 1000, 65536, MiB];
        let i = 0;
        for (const n of sizes) {
          for (const payload of [jsonOf(n), Buffer.from(jsonOf(n)), randomBytes(n, n + 7)]) {
            const read0 = sock.bytesRead;
            const wrote0 = sock.bytesWritten;
            c.ws.send(payload);
            const m = await c.next(`${kind} ${name} #${i++} (${n} B)`);
            assert.equal(m.isBinary, typeof payload !== 'string');
            assert.ok(Buffer.compare(m.data, Buffer.from(payload)) === 0, `${n} B: echo differs`);
            if (n >= 65536 && typeof payload === 'string') {
              // Compressed on the wire both ways: far fewer bytes than the payload.
              assert.ok(sock.bytesWritten - wrote0 < n / 3, `sent ${sock.bytesWritten - wrote0} for ${n}`);
              assert.ok(sock.bytesRead - read0 < n / 3, `received ${sock.bytesRead - read0} for ${n}`);
            }
          }
        }
        // A fragmented compressed message (RSV1 on the first frame only).
        const parts = [jsonOf(5000), jsonOf(100), randomBytes(3000, 1).toString('latin1')];
        c.ws.send(parts[0], { fin: false });
        c.ws.send(parts[1], { fin: false });
        c.ws.send(parts[2], { fin: true });
        assert.equal(await c.text('fragmented'), parts.join(''));
        const ev = await c.close(1000);
        assert.equal(ev.code, 1000);
        assert.equal(ev.wasClean, true);
      });
    }
  }

  test('no --deflate: the offer is declined and messages go uncompressed', async () => {
    const { url: plain } = await startServer('echo');
    const c = await open(plain, undefined, { perMessageDeflate: { threshold: 0 } });
    assert.equal(c.ws.extensions, '');
    assert.equal(c.upgradeHeaders['sec-websocket-extensions'], undefined);
    c.ws.send(jsonOf(1000));
    assert.equal(await c.text(), jsonOf(1000));
    await c.close(1000);
  });
});
