"""Interop over TLS: the Python `websockets` client and `ssl` against `wsloop --tls-cert`.

Run with pytest (`python3 -m pytest tests/python -q`) or directly
(`python3 tests/python/test_tls.py`). The server is `$WSLOOP_BIN` (default
`<repo>/target/debug/wsloop`) on an ephemeral port; the certificate comes from
`scripts/test-cert.sh` (openssl CLI) in a temporary directory, and the client trusts
its CA through an `ssl` context (no verification is switched off).
"""

import asyncio
import os
import socket
import ssl
import subprocess
import sys
import tempfile

from websockets.asyncio.client import connect

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WSLOOP_BIN = os.environ.get("WSLOOP_BIN", os.path.join(REPO, "target", "debug", "wsloop"))
T = 30.0
MiB = 1 << 20


class TlsServer:
    def __init__(self, mode="demo"):
        self.dir = tempfile.TemporaryDirectory(prefix="wsloop-tls-py-")
        subprocess.run([os.path.join(REPO, "scripts", "test-cert.sh"), self.dir.name], check=True)
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")
        self.proc = subprocess.Popen(
            [WSLOOP_BIN, mode, "--listen", "127.0.0.1:0",
             "--tls-cert", self.path("cert.pem"), "--tls-key", self.path("key.pem")],
            stdout=subprocess.PIPE, env=env, cwd=REPO,
        )
        line = self.proc.stdout.readline().decode()
        prefix = f"wsloop {mode} listening on "
        if not line.startswith(prefix):
            self.kill()
            raise RuntimeError(f"unexpected start-up line {line!r}")
        self.port = int(line[len(prefix):].strip().rsplit(":", 1)[1])
        self.ctx = ssl.create_default_context(cafile=self.path("ca.pem"))

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.dir.cleanup()


_server = None


def server():
    global _server
    if _server is None:
        _server = TlsServer()
    assert _server.proc.poll() is None, "wsloop died"
    return _server


def teardown_module(_module=None):
    global _server
    if _server is not None:
        alive = _server.proc.poll() is None
        _server.kill()
        _server = None
        assert alive, "wsloop died during the TLS tests"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def test_wss_echo_sizes_and_close():
    s = server()

    async def go():
        async with connect(f"wss://localhost:{s.port}/echo", ssl=s.ctx, max_size=4 * MiB,
                           open_timeout=T, close_timeout=T, ping_interval=None) as ws:
            tls = ws.transport.get_extra_info("ssl_object")
            assert tls.selected_alpn_protocol() in (None, "http/1.1")
            assert tls.version() == "TLSv1.3", tls.version()
            for n in [0, 125, 126, 16384, 65536, MiB]:
                msg = "é" * (n // 2) + "x" * (n % 2)
                await ws.send(msg)
                assert await asyncio.wait_for(ws.recv(), T) == msg
                data = bytes((i * 7) & 0xFF for i in range(n))
                await ws.send(data)
                assert await asyncio.wait_for(ws.recv(), T) == data
            await ws.close(1000, "bye")
            assert ws.close_code == 1000

    run(go())


def test_tls12_and_alpn():
    s = server()
    ctx = ssl.create_default_context(cafile=s.path("ca.pem"))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])

    async def go():
        async with connect(f"wss://127.0.0.1:{s.port}/echo", ssl=ctx, open_timeout=T,
                           close_timeout=T, ping_interval=None) as ws:
            tls = ws.transport.get_extra_info("ssl_object")
            assert tls.version() == "TLSv1.2", tls.version()
            assert tls.selected_alpn_protocol() == "http/1.1"
            await ws.send("tls 1.2")
            assert await asyncio.wait_for(ws.recv(), T) == "tls 1.2"

    run(go())


def test_https_page_and_plain_http_refused():
    s = server()
    with socket.create_connection(("127.0.0.1", s.port), timeout=T) as raw:
        with s.ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            got = b""
            while chunk := tls.recv(65536):
                got += chunk
    assert got.startswith(b"HTTP/1.1 200"), got[:100]
    assert b"<html" in got
    with socket.create_connection(("127.0.0.1", s.port), timeout=T) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        got = b""
        while chunk := raw.recv(65536):
            got += chunk
    assert got.startswith(b"HTTP/1.1 400 "), got


def test_close_notify_is_answered():
    """`unwrap()` sends close_notify and waits for the server's: a clean TLS close, on a
    fresh connection and on an idle keep-alive one (before: a bare TCP close, reported as
    "EOF occurred in violation of protocol")."""
    s = server()
    for request in (None, b"GET /style.css HTTP/1.1\r\nHost: localhost\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", s.port), timeout=T) as raw:
            tls = s.ctx.wrap_socket(raw, server_hostname="localhost")
            if request:
                tls.sendall(request)
                got = b""
                while b"\r\n\r\n" not in got:
                    got += tls.recv(65536)
                head, body = got.split(b"\r\n\r\n", 1)
                length = int([h for h in head.split(b"\r\n")
                              if h.lower().startswith(b"content-length:")][0].split(b":")[1])
                while len(body) < length:
                    body += tls.recv(65536)
                assert head.startswith(b"HTTP/1.1 200"), head
            plain = tls.unwrap()
            assert plain.recv(1) == b"", "no FIN after the server's close_notify"
            plain.close()


def test_untrusted_certificate_is_refused_by_the_client():
    s = server()

    async def go():
        try:
            async with connect(f"wss://localhost:{s.port}/echo", ssl=ssl.create_default_context(),
                               open_timeout=T):
                pass
        except ssl.SSLCertVerificationError:
            return
        raise AssertionError("a client without the test CA connected")

    run(go())


if __name__ == "__main__":
    failed = 0
    for name, fn in sorted(globals().items()):
        if name.startswith("test_") and callable(fn):
            try:
                fn()
                print(f"ok   {name}")
            except Exception as e:  # noqa: BLE001
                failed += 1
                print(f"FAIL {name}: {type(e).__name__}: {e}")
    teardown_module()
    sys.exit(1 if failed else 0)
