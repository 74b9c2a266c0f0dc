#!/usr/bin/env python3
"""Finding B probe: a chat reader that trickles (RATE bytes per second, small receive
buffer) against `wsloop chat` under pace. Prints how long a 400 x 32 KiB burst takes to
reach a reader that reads, and whether the trickler was closed.

usage: attack/trickle.py RATE_BYTES_PER_S [TIMEOUT_S]
"""
import asyncio, base64, os, socket, subprocess, sys, threading, time
import websockets

RATE = int(sys.argv[1]); TIMEOUT = sys.argv[2] if len(sys.argv) > 2 else "2"
N = 400; SIZE = 32 << 10
srv = subprocess.Popen(["target/release/wsloop", "--listen", "127.0.0.1:0", "--threads", "1",
    "--slow-subscriber-timeout", TIMEOUT, "chat"], stderr=subprocess.STDOUT, stdout=subprocess.PIPE, text=True,
    env=dict(os.environ, RUST_LOG="warn,wsloop=info"))
port = None
log = []
def pump():
    global port
    for line in srv.stdout:
        log.append(line.rstrip())
        if port is None and "listening on 127.0.0.1:" in line:
            port = int(line.split("127.0.0.1:")[1].split()[0].strip("/),"))
threading.Thread(target=pump, daemon=True).start()
while port is None: time.sleep(0.05)

def trickler(stop, out):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    total = 0; s.settimeout(0.2); eof = False
    t0 = time.time()
    while not stop.is_set():
        want = RATE // 10
        got = 0
        while got < want:
            try: b = s.recv(want - got)
            except socket.timeout: break
            if not b: eof = True; break
            got += len(b)
        total += got
        if eof: break
        time.sleep(0.1)
    out.update(total=total, eof=eof, at=time.time() - t0)

async def main():
    stop = threading.Event(); out = {}
    th = threading.Thread(target=trickler, args=(stop, out)); th.start()
    await asyncio.sleep(0.3)
    url = f"ws://127.0.0.1:{port}/"
    async with websockets.connect(url, max_size=None, max_queue=None) as reader, \
               websockets.connect(url, max_size=None) as pub:
        body = "x" * SIZE
        async def send():
            for i in range(N): await pub.send(f"{i:06d}" + body)
        async def drain_pub():
            async for _ in pub: pass
        t0 = time.time(); st = asyncio.create_task(send()); dp = asyncio.create_task(drain_pub())
        got = 0
        try:
            async with asyncio.timeout(40):
                async for m in reader:
                    if len(m) > SIZE: got += 1
                    if got == N: break
        except TimeoutError: pass
        took = time.time() - t0
        st.cancel(); dp.cancel()
    stop.set(); th.join()
    print(f"rate {RATE} B/s timeout {TIMEOUT}s: reader got {got}/{N} in {took:.1f}s; trickler read {out['total']} B, closed={out['eof']}")
    for l in log:
        if "slow" in l: print("  server:", l[-140:])
asyncio.run(main())
srv.terminate(); srv.wait()
