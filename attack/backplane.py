#!/usr/bin/env python3
"""Backplane under pace: instance A (`wsloop chat --redis`) has a never-reading member and
a reader; a member of instance B publishes N x 64 KiB flat out. A's backplane reader waits
for A's mailbox (held by the dead member for up to --slow-subscriber-timeout); Redis
buffers for A meanwhile. Does A's reader get all N? usage: attack/backplane.py [N]"""
import asyncio, base64, os, re, socket, subprocess, sys, threading, time
import websockets
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
rport = free_port()
redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(0.5)
def start(name):
    p = subprocess.Popen(["target/release/wsloop", "--listen", "127.0.0.1:0", "--threads", "1", "--metrics",
                          "--redis", f"redis://127.0.0.1:{rport}", *os.environ.get("EXTRA", "").split(), "chat"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=dict(os.environ, RUST_LOG="info"))
    for line in p.stdout:
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if m: break
    log = []
    threading.Thread(target=lambda: [log.append(l.rstrip()) for l in p.stdout], daemon=True).start()
    return p, int(m.group(1)), log
a, aport, alog = start("A"); b, bport, blog = start("B")
time.sleep(1.0)
def dead(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 10)
    s.connect(("127.0.0.1", port)); key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    return s
async def main():
    d = dead(aport)
    reader = await websockets.connect(f"ws://127.0.0.1:{aport}/", max_size=None, max_queue=None)
    pub = await websockets.connect(f"ws://127.0.0.1:{bport}/", max_size=None, max_queue=None)
    await asyncio.sleep(1.0)
    body = "x" * (64 << 10)
    async def send():
        for i in range(N): await pub.send(f"M{i:06d} {body}")
    async def drain():
        try:
            async for _ in pub: pass
        except Exception: pass
    dr = asyncio.create_task(drain()); t0 = time.time(); st = asyncio.create_task(send())
    got = set()
    try:
        async with asyncio.timeout(60):
            async for m in reader:
                mm = re.search(r": M(\d+) ", m)
                if mm: got.add(int(mm.group(1)))
                if len(got) == N: break
    except TimeoutError: pass
    print(f"A's reader got {len(got)}/{N} in {time.time()-t0:.1f}s")
    st.cancel(); dr.cancel(); d.close()
    r, w = await asyncio.open_connection("127.0.0.1", aport)
    w.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    for l in (await r.read()).decode().splitlines():
        if re.match(r"wsloop_(backplane|mailbox|slow_sub)", l): print("  A", l)
    for l in alog:
        if "backplane" in l.lower() or "redis" in l.lower() or "WARN" in l: print("  A log:", l[-160:])
asyncio.run(main())
for p in (a, b): p.terminate(); p.wait()
redis.terminate(); redis.wait()
