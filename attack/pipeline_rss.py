#!/usr/bin/env python3
"""Unbounded-memory probe: clients that pipeline requests or pings without reading the
answers (GET /metrics, GET /, WebSocket pings, close frames), against `wsloop demo
--metrics ARGS`; prints server RSS before/after. usage: attack/pipeline_rss.py [args]"""
import os, re, socket, subprocess, sys, threading, time, base64, struct
srv = subprocess.Popen(["target/release/wsloop", "--listen", "127.0.0.1:0", "--metrics", *sys.argv[1:], "demo"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ, RUST_LOG="warn"))
port = None
for line in srv.stdout:
    m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    if m: port = int(m.group(1)); break
threading.Thread(target=lambda: [None for _ in srv.stdout], daemon=True).start()
def rss(): return int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{srv.pid}/status").read()).group(1))
def flood(payload, secs=4):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port)); s.settimeout(0.5); sent = 0; t0 = time.time()
    if callable(payload): payload = payload(s)
    while time.time() - t0 < secs:
        try: sent += s.send(payload)
        except (socket.timeout, BlockingIOError): pass
        except OSError: break
    return s, sent
def ws(path):
    def up(s):
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        ping = bytes([0x89, 0x80 | 125]) + b"\0\0\0\0" + b"p" * 125
        return ping * 256
    return up
base = rss(); print("rss before", base, "KiB")
keep = []
for name, p in [("GET /metrics", b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 512),
                ("GET /", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 512),
                ("ws pings /echo", ws("/echo")), ("ws pings /chat", ws("/chat"))]:
    s, sent = flood(p); keep.append(s)
    print(f"{name}: client sent {sent/1e6:.1f} MB without reading; server rss {rss()} KiB")
srv.terminate(); srv.wait()
