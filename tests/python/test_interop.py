"""Interop: the Python `websockets` client (a library we did not write) against wsloop.

Run with pytest (`python3 -m pytest tests/python -q`) or directly
(`python3 tests/python/test_interop.py`, prints `N passed, N failed`, exits 1 on failure).

The server binary is `$WSLOOP_BIN` (default `<repo>/target/debug/wsloop`); every server is
started on an ephemeral port by this file and killed at the end. The cross-library chat
test also needs `node` and the `ws` package in `tests/node/node_modules`.
"""

import asyncio
import atexit
import base64
import json
import os
import shutil
import subprocess
import sys
import time

import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WSLOOP_BIN = os.environ.get("WSLOOP_BIN", os.path.join(REPO, "target", "debug", "wsloop"))
NODE_DIR = os.path.join(REPO, "tests", "node")

# Every await in these tests is bounded by this (a loaded 2-core machine, debug build).
T = 30.0
MiB = 1 << 20
SIZES = [0, 125, 126, 65535, 65536, MiB]
BIG = 16 * MiB - 1  # just under the default --max-message-size
# Clients accept anything the server may send (chat adds a `userN: ` prefix).
MAX = 32 * MiB


# --------------------------------------------------------------------------- servers


class Server:
    """`wsloop <mode> --listen 127.0.0.1:0 <flags>`, address read from its start-up line."""

    def __init__(self, mode, *flags):
        if not os.access(WSLOOP_BIN, os.X_OK):
            raise RuntimeError(f"no server binary at {WSLOOP_BIN} (run `cargo build` or set WSLOOP_BIN)")
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")
        self.proc = subprocess.Popen(
            [WSLOOP_BIN, mode, "--listen", "127.0.0.1:0", "--no-www", *flags],
            stdout=subprocess.PIPE,
            env=env,
        )
        line = self.proc.stdout.readline().decode()
        prefix = f"wsloop {mode} listening on "
        if not line.startswith(prefix):
            self.kill()
            raise RuntimeError(f"unexpected start-up line {line!r}")
        self.addr = line[len(prefix):].strip()
        self.url = f"ws://{self.addr}/"

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


_servers = {}


def server(mode, *flags):
    """One server per (mode, flags) for this file, started on first use."""
    key = (mode, flags)
    if key not in _servers:
        _servers[key] = Server(mode, *flags)
    s = _servers[key]
    assert s.alive(), f"wsloop {mode} died (exit {s.proc.returncode})"
    return s


def stop_servers():
    for s in _servers.values():
        s.kill()
    _servers.clear()


atexit.register(stop_servers)


def teardown_module(_module=None):
    # Every server must have survived its tests.
    dead = [k for k, s in _servers.items() if not s.alive()]
    stop_servers()
    assert not dead, f"servers died: {dead}"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def text_of(n):
    """A str of exactly `n` UTF-8 bytes with multi-byte characters in it."""
    if n < 9:
        return "x" * n
    s = "€𝄞é" + "x" * (n - 9)
    assert len(s.encode()) == n
    return s


def bytes_of(n):
    """`n` bytes covering every byte value."""
    pattern = bytes((i * 7 + 3) & 0xFF for i in range(256))
    return (pattern * (n // 256 + 1))[:n]


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), T)


def ws_connect(url, **kw):
    kw.setdefault("max_size", MAX)
    kw.setdefault("open_timeout", T)
    kw.setdefault("close_timeout", T)
    kw.setdefault("ping_interval", None)
    return connect(url, **kw)


async def close_cleanly(ws, code=1000, reason=""):
    await asyncio.wait_for(ws.close(code, reason), T)
    assert ws.close_code == code, ws.close_code
    assert ws.close_reason == reason, ws.close_reason


def big_is_fast():
    """Whether a 16 MiB − 1 round trip fits the time budget (debug builds are slow)."""
    return os.environ.get("WSLOOP_SKIP_BIG") != "1"


# --------------------------------------------------------------------------- echo


def test_echo_text_and_binary_sizes():
    url = server("echo").url

    async def go():
        async with ws_connect(url) as ws:
            for n in SIZES:
                t = text_of(n)
                await ws.send(t)
                got = await recv(ws)
                assert isinstance(got, str) and got == t, f"text {n}: got {len(got)}"
                b = bytes_of(n)
                await ws.send(b)
                got = await recv(ws)
                assert isinstance(got, bytes) and got == b, f"binary {n}: got {len(got)}"
            await close_cleanly(ws)

    run(go())


def test_echo_16mib_minus_one():
    if not big_is_fast():
        print("skipped: WSLOOP_SKIP_BIG=1")
        return
    url = server("echo").url

    async def go():
        async with ws_connect(url) as ws:
            t0 = time.monotonic()
            b = bytes_of(BIG)
            await ws.send(b)
            got = await asyncio.wait_for(ws.recv(), 60)
            assert got == b, len(got)
            t = text_of(BIG)
            await ws.send(t)
            got = await asyncio.wait_for(ws.recv(), 60)
            assert got == t, len(got)
            print(f"16 MiB - 1 text+binary round trips: {time.monotonic() - t0:.2f} s")
            await close_cleanly(ws)

    run(go())


def test_echo_fragmented_sends():
    url = server("echo").url

    async def go():
        async with ws_connect(url) as ws:
            parts = ["héllo ", "", "frag", "mented €", "x" * 70000, "𝄞 end"]
            await ws.send(parts)
            assert await recv(ws) == "".join(parts)
            bparts = [b"\x00\x01", b"", bytes_of(65536), b"\xff" * 3]
            await ws.send(bparts)
            assert await recv(ws) == b"".join(bparts)

            # An async iterable, with a ping answered between the fragments.
            async def gen():
                for i in range(50):
                    if i == 25:
                        pong = await ws.ping(b"mid-message")
                        await asyncio.wait_for(pong, T)
                    yield f"{i},"

            await ws.send(gen())
            assert await recv(ws) == "".join(f"{i}," for i in range(50))
            # Still in sync: an ordinary message after the fragmented ones.
            await ws.send("after")
            assert await recv(ws) == "after"
            await close_cleanly(ws)

    run(go())


def test_echo_ping_pong_with_payload():
    url = server("echo").url

    async def go():
        async with ws_connect(url) as ws:
            for payload in [b"", b"p", b"\x00\xff" * 20, bytes(range(125))]:
                waiter = await ws.ping(payload)
                latency = await asyncio.wait_for(waiter, T)
                assert latency >= 0
            # Several outstanding pings are all answered (websockets matches payloads).
            waiters = [await ws.ping(f"ping-{i}".encode()) for i in range(10)]
            await asyncio.wait_for(asyncio.gather(*waiters), T)
            await ws.send("still echoing")
            assert await recv(ws) == "still echoing"
            await close_cleanly(ws)

    run(go())


def test_echo_close_code_and_reason_both_sides():
    url = server("echo").url

    async def go():
        for code, reason in [(1000, ""), (1001, "going"), (4001, "custom reason é"), (3000, "r" * 123)]:
            async with ws_connect(url) as ws:
                await ws.send("x")
                assert await recv(ws) == "x"
                await asyncio.wait_for(ws.close(code, reason), T)
                p = ws.protocol
                # What we sent, and what the server echoed back.
                assert p.close_sent.code == code and p.close_sent.reason == reason
                assert p.close_rcvd is not None, "server sent no close frame"
                assert (p.close_rcvd.code, p.close_rcvd.reason) == (code, reason)
                assert p.close_rcvd_then_sent is False
                assert (ws.close_code, ws.close_reason) == (code, reason)
                # The server closed TCP after the close handshake (no 1006).
                await asyncio.wait_for(ws.wait_closed(), T)

    run(go())


def test_server_initiated_close_1009():
    url = server("echo", "--max-message-size", "1000").url

    async def go():
        async with ws_connect(url) as ws:
            await ws.send("a" * 1000)
            assert await recv(ws) == "a" * 1000
            await ws.send("a" * 1001)
            try:
                await recv(ws)
                raise AssertionError("an oversized message was echoed")
            except ConnectionClosedError:
                pass
            assert ws.protocol.close_rcvd is not None, "no close frame from the server"
            assert ws.close_code == 1009, ws.close_code

    run(go())


def test_echo_subprotocols():
    url = server("echo").url

    async def go():
        cases = [
            (["com.kaazing.echo"], "com.kaazing.echo"),
            (["echo"], "echo"),
            (["echo", "com.kaazing.echo"], "com.kaazing.echo"),  # server preference
            (["nope", "com.kaazing.echo"], "com.kaazing.echo"),
            (["nope"], None),
            (None, None),
        ]
        for offered, want in cases:
            async with ws_connect(url, subprotocols=offered) as ws:
                assert ws.subprotocol == want, (offered, ws.subprotocol)
                resp = ws.response.headers.get("Sec-WebSocket-Protocol")
                assert resp == want, (offered, resp)
                await ws.send("p")
                assert await recv(ws) == "p"

    run(go())


# --------------------------------------------------------------------------- chat


async def join(url):
    """Connects a chat client; returns (ws, N) from its own `userN come in!`."""
    ws = await ws_connect(url)
    first = await recv(ws)
    assert first.startswith("user") and first.endswith(" come in!"), first
    return ws, int(first[4 : -len(" come in!")])


def test_chat_sizes_and_binary_relay():
    # One global order across clients; a per-reader buffer that holds the 16 MiB message
    # (the chat refuses messages bigger than --max-backpressure with 1009).
    url = server("chat", "--threads", "1", "--max-backpressure", "32MiB").url

    async def go():
        a, na = await join(url)
        b, nb = await join(url)
        assert await recv(a) == f"user{nb} come in!"
        sizes = SIZES + ([BIG] if big_is_fast() else [])
        for n in sizes:
            t = text_of(n)
            await a.send(t)
            want = f"user{na}: {t}"
            for ws in (a, b):
                got = await asyncio.wait_for(ws.recv(), 60)
                assert got == want, f"text {n}: {len(got)}"
            d = bytes_of(n)
            await b.send(d)
            for ws in (a, b):
                got = await asyncio.wait_for(ws.recv(), 60)
                assert got == d, f"binary {n}: {len(got)}"
        # Fragmented, through the broadcast.
        await a.send(["frag", "men", "ted"])
        for ws in (a, b):
            assert await recv(ws) == f"user{na}: fragmented"
        await close_cleanly(b, 1000, "bye")
        assert await recv(a) == f"user{nb} left"
        await close_cleanly(a)

    run(go())


NODE_PEER = r"""
import { createInterface } from 'node:readline';
import WebSocket from 'ws';
const ws = new WebSocket(process.argv[1]);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
ws.on('open', () => out({ open: true }));
ws.on('message', (data, isBinary) =>
  out(isBinary ? { binary: data.toString('base64') } : { text: data.toString() }));
ws.on('close', (code, reason) => { out({ close: code, reason: reason.toString() }); process.exit(0); });
ws.on('error', (e) => { out({ error: String(e) }); process.exit(1); });
createInterface({ input: process.stdin }).on('line', (line) => {
  const c = JSON.parse(line);
  if (c.text !== undefined) ws.send(c.text);
  if (c.binary !== undefined) ws.send(Buffer.from(c.binary, 'base64'));
  if (c.close) ws.close(c.close, c.reason || '');
});
setTimeout(() => { out({ error: 'node peer timed out' }); process.exit(2); }, 60000).unref();
"""


class NodePeer:
    """A Node `ws` client in a child process, driven by JSON lines on stdin/stdout."""

    def __init__(self, proc):
        self.proc = proc

    @classmethod
    async def start(cls, url):
        proc = await asyncio.create_subprocess_exec(
            "node", "--input-type=module", "-e", NODE_PEER, url,
            cwd=NODE_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        peer = cls(proc)
        assert await peer.next() == {"open": True}
        return peer

    async def next(self):
        line = await asyncio.wait_for(self.proc.stdout.readline(), T)
        assert line, "node peer exited"
        msg = json.loads(line)
        assert "error" not in msg, msg
        return msg

    async def recv(self):
        m = await self.next()
        if "text" in m:
            return m["text"]
        if "binary" in m:
            return base64.b64decode(m["binary"])
        raise AssertionError(f"expected a message, got {m}")

    def command(self, **c):
        self.proc.stdin.write((json.dumps(c) + "\n").encode())

    async def finish(self):
        try:
            await asyncio.wait_for(self.proc.wait(), T)
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()


def have_node():
    return shutil.which("node") is not None and os.path.isdir(os.path.join(NODE_DIR, "node_modules", "ws"))


def test_chat_broadcast_across_python_and_node_clients():
    assert have_node(), "node and tests/node/node_modules/ws are needed"
    url = server("chat", "--threads", "1").url  # one global order across clients

    async def go():
        p1, n1 = await join(url)
        node = await NodePeer.start(url)
        first = await node.recv()
        n2 = int(first[4 : -len(" come in!")])
        assert first == f"user{n2} come in!"
        assert await recv(p1) == f"user{n2} come in!"
        p2, n3 = await join(url)
        assert await recv(p1) == f"user{n3} come in!"
        assert await node.recv() == f"user{n3} come in!"

        async def everyone(want):
            for got in [await recv(p1), await recv(p2), await node.recv()]:
                assert got == want, (got, want)

        await p1.send("hello from python")
        await everyone(f"user{n1}: hello from python")
        node.command(text="hello from node ✓")
        await everyone(f"user{n2}: hello from node ✓")
        node.command(binary=base64.b64encode(bytes(range(256))).decode())
        await everyone(bytes(range(256)))

        # Both libraries sending at once: every client sees the same sequence, and each
        # sender's messages in the order sent.
        count = 100
        for i in range(count):
            node.command(text=f"n{i}")
        await asyncio.gather(*(p2.send(f"p{i}") for i in range(count)))
        seqs = []
        for r in (p1, p2, node):
            seq = [await (r.recv() if r is node else recv(r)) for _ in range(2 * count)]
            seqs.append(seq)
        assert seqs[0] == seqs[1] == seqs[2], "clients saw different orders"
        from_node = [m for m in seqs[0] if m.startswith(f"user{n2}: ")]
        from_p2 = [m for m in seqs[0] if m.startswith(f"user{n3}: ")]
        assert from_node == [f"user{n2}: n{i}" for i in range(count)]
        assert from_p2 == [f"user{n3}: p{i}" for i in range(count)]

        node.command(close=4000, reason="node out")
        closed = await node.next()
        assert closed == {"close": 4000, "reason": "node out"}, closed
        await node.finish()
        assert await recv(p1) == f"user{n2} left"
        assert await recv(p2) == f"user{n2} left"
        await close_cleanly(p2)
        assert await recv(p1) == f"user{n3} left"
        await close_cleanly(p1)

    run(go())


# --------------------------------------------------------------------------- backplane


class Redis:
    """Debian's `redis-server` on a free loopback port (`scripts/test.sh` installs it; a
    missing one fails the test with that message rather than skipping it)."""

    def __init__(self, tmp):
        exe = shutil.which("redis-server")
        assert exe, "redis-server is needed: apt-get install -y redis-server (scripts/test.sh does)"
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(tmp)],
            stdout=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/"

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=10)


def backplane_metric(srv, name):
    import urllib.request

    with urllib.request.urlopen(f"http://{srv.addr}/metrics", timeout=T) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def wait_subscribed(srv, subs):
    end = time.monotonic() + T
    while not (backplane_metric(srv, "wsloop_backplane_up") == 1
               and backplane_metric(srv, "wsloop_backplane_subscriptions") == subs):
        assert time.monotonic() < end, f"{srv.addr}: backplane never reached {subs} subscription(s)"
        time.sleep(0.02)


def test_chat_across_two_instances_through_redis():
    import tempfile

    tmp = tempfile.mkdtemp(prefix="wsloop-redis-")
    redis = Redis(tmp)
    one = two = None
    try:
        one = Server("chat", "--threads", "2", "--metrics", "--redis", redis.url)
        two = Server("chat", "--threads", "2", "--metrics", "--redis", redis.url)

        async def join_tagged(url):
            ws = await ws_connect(url)
            first = await recv(ws)
            assert first.startswith("user") and first.endswith(" come in!"), first
            return ws, first[: -len(" come in!")]

        async def go():
            wait_subscribed(one, 0)
            wait_subscribed(two, 0)
            a, name_a = await join_tagged(one.url)
            wait_subscribed(one, 1)
            b, name_b = await join_tagged(two.url)
            # Unique across instances: user<N>-<instance tag>, the tags differ.
            assert name_a != name_b and name_a.split("-")[1] != name_b.split("-")[1], (name_a, name_b)
            assert await recv(a) == f"{name_b} come in!"
            wait_subscribed(two, 1)
            for i in range(50):
                await a.send(f"a{i}")
                await b.send(bytes([i]) * 3)
            for ws in (a, b):
                got = [await recv(ws) for _ in range(100)]
                assert [m for m in got if isinstance(m, str)] == [f"{name_a}: a{i}" for i in range(50)]
                assert [m for m in got if isinstance(m, bytes)] == [bytes([i]) * 3 for i in range(50)]
            await close_cleanly(b)
            assert await recv(a) == f"{name_b} left"
            await close_cleanly(a)

        run(go())
    finally:
        for s in (one, two):
            if s is not None:
                s.kill()
        redis.kill()
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- runner


def _main():
    tests = [(k, v) for k, v in sorted(globals().items()) if k.startswith("test_") and callable(v)]
    passed = failed = 0
    try:
        for name, fn in tests:
            t0 = time.monotonic()
            try:
                fn()
                passed += 1
                print(f"ok   {name} ({time.monotonic() - t0:.1f} s)")
            except Exception as e:  # noqa: BLE001 - report every failure and go on
                failed += 1
                print(f"FAIL {name}: {type(e).__name__}: {e}")
        try:
            teardown_module()
        except AssertionError as e:
            failed += 1
            print(f"FAIL teardown: {e}")
    finally:
        stop_servers()
    print(f"{passed} passed, {failed} failed (websockets {websockets.__version__})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(_main())
