#!/usr/bin/env python3
"""Order/loss probe under pace: `wsloop chat` with ARGS (e.g. --threads 2 --deflate
--deflate-context-takeover). R readers (python websockets, permessage-deflate offered)
read everything; P publishers send N text messages each of varied size (1-60 KiB); one
client never reads (small receive buffer). Every reader must get every publisher's
messages, each publisher's in order. Also scrapes /metrics at the end.

usage: attack/order.py [wsloop args...]
"""
import asyncio, os, random, re, socket, subprocess, sys, threading, time, base64
import websockets

ARGS = sys.argv[1:]
R, P, N = 4, 3, 300
srv = subprocess.Popen(["target/release/wsloop", "--listen", "127.0.0.1:0", "--metrics", *ARGS, "chat"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       env=dict(os.environ, RUST_LOG="warn"))
port = None; log = []
def pump():
    global port
    for line in srv.stdout:
        log.append(line.rstrip())
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if m and port is None: port = int(m.group(1))
threading.Thread(target=pump, daemon=True).start()
while port is None: time.sleep(0.05)
url = f"ws://127.0.0.1:{port}/"

def dead():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 10)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    return s

async def reader(ws, want):
    seen = {}; bad = []
    try:
        async with asyncio.timeout(60):
            async for m in ws:
                mm = re.match(r"user\d+: P(\d+) (\d+) ", m)
                if not mm: continue
                p, i = int(mm.group(1)), int(mm.group(2))
                last = seen.get(p, -1)
                if i != last + 1: bad.append((p, last, i))
                seen[p] = i
                if sum(v + 1 for v in seen.values()) >= want: break
    except (TimeoutError, websockets.ConnectionClosed) as e:
        bad.append(("end", repr(e)[:80]))
    return seen, bad

async def main():
    d = dead()
    readers = [await websockets.connect(url, max_size=None, max_queue=None) for _ in range(R)]
    pubs = [await websockets.connect(url, max_size=None, max_queue=None) for _ in range(P)]
    rnd = random.Random(1)
    async def publish(k, ws):
        words = ["lorem", "ipsum", "dolor", "sit", "amet", "wsloop", "pace"]
        for i in range(N):
            n = rnd.randint(1 << 10, 60 << 10)
            body = " ".join(rnd.choice(words) for _ in range(n // 6))
            await ws.send(f"P{k} {i} {body}")
    async def drain(ws):
        try:
            async for _ in ws: pass
        except Exception: pass
    t0 = time.time()
    tasks = [asyncio.create_task(reader(ws, P * N)) for ws in readers]
    drains = [asyncio.create_task(drain(ws)) for ws in pubs]
    await asyncio.gather(*(publish(k, ws) for k, ws in enumerate(pubs)))
    res = await asyncio.gather(*tasks)
    took = time.time() - t0
    ok = True
    for j, (seen, bad) in enumerate(res):
        got = sum(v + 1 for v in seen.values())
        if got != P * N or bad: ok = False
        print(f"reader {j}: {got}/{P*N} {'OK' if not bad else 'BAD ' + str(bad[:5])}")
    print(f"{'PASS' if ok else 'FAIL'} {ARGS} in {took:.1f}s")
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    body = (await r.read()).decode()
    for l in body.splitlines():
        if re.match(r"wsloop_(mailbox|publishers_paced|congested|slow_sub|dropped|resident|process_resident)", l): print("  ", l)
    for l in log:
        if "WARN" in l or "ERROR" in l: print("  server:", l[-150:])
    for ws in readers + pubs: await ws.close()
    d.close()
asyncio.run(main())
srv.terminate(); srv.wait()
