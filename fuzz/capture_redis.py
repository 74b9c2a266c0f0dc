#!/usr/bin/env python3
"""Captures what a real redis-server sends the backplane, as seeds for the `resp` fuzz target.

    fuzz/capture_redis.py OUT_DIR      (needs redis-server on the PATH)

Starts redis-server on a free loopback port, plays the conversations the backplane has (and a
few it should survive: refused AUTH, NOPERM publishes, client tracking pushes, RESP2 nulls),
and writes each connection's received bytes to OUT_DIR/<name>, prefixed with the two bytes the
fuzz check reads first (limits pick 2 = the reader's defaults, then a cut point).
"""
import os
import socket
import subprocess
import sys
import tempfile
import time


def cmd(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def envelope(instance, seq, text, payload):
    return (b"WL\x01" + bytes([1 if text else 0]) + instance.to_bytes(8, "big")
            + seq.to_bytes(8, "big") + payload)


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.settimeout(0.3)
        self.got = b""

    def send(self, *commands):
        self.s.sendall(b"".join(commands))
        self.drain()

    def drain(self):
        while True:
            try:
                b = self.s.recv(1 << 16)
            except socket.timeout:
                return
            if not b:
                return
            self.got += b


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    work = tempfile.mkdtemp()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", work],
                             stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
        captures = {}

        # The backplane's own conversation: HELLO, SUBSCRIBE, messages, PUBLISH answers, PING.
        sub = Conn(port)
        sub.send(cmd("HELLO", "3", "SETNAME", "wsloop-capture"))
        sub.send(cmd("SUBSCRIBE", "wsloop:room", "wsloop:chat", "wsloop:"))
        pub = Conn(port)
        pub.send(cmd("HELLO", "3"))
        for i, payload in enumerate([b"hello", b"", b"\r\n*1\r\n", "h\u00e9llo".encode(), bytes(range(256))]):
            pub.send(cmd("PUBLISH", "wsloop:room", envelope(0xA11CE, i + 1, i != 4, payload)))
        pub.send(cmd("PUBLISH", "wsloop:chat", b"not an envelope"))
        sub.send(cmd("PUBLISH", "wsloop:room", envelope(0xB0B, 1, True, b"own")), cmd("PING"))
        sub.send(cmd("UNSUBSCRIBE", "wsloop:chat"), cmd("PING"), cmd("UNSUBSCRIBE"))
        captures["backplane_session"] = sub.got
        captures["publisher_session"] = pub.got

        # Errors: HELLO refused (bad password, unknown protocol), unknown command, NOPERM.
        bad = Conn(port)
        bad.send(cmd("HELLO", "3", "AUTH", "default", "wrong"), cmd("HELLO", "4"),
                 cmd("NOSUCHCOMMAND"), cmd("PUBLISH", "too", "many", "args"))
        captures["errors"] = bad.got
        admin = Conn(port)
        admin.send(cmd("HELLO", "3"),
                   cmd("ACL", "SETUSER", "ro", "on", ">pw", "resetchannels", "+@all"))
        ro = Conn(port)
        ro.send(cmd("HELLO", "3", "AUTH", "ro", "pw"),
                *[cmd("PUBLISH", "wsloop:room", envelope(1, i, True, b"x")) for i in range(1, 4)],
                cmd("SUBSCRIBE", "wsloop:room"), cmd("PING"))
        captures["noperm"] = ro.got

        # Replies of other shapes: maps, sets, doubles, nulls, big numbers, verbatim, tracking.
        misc = Conn(port)
        misc.send(cmd("HELLO", "3"), cmd("CLIENT", "TRACKING", "on"), cmd("SET", "k", "v"),
                  cmd("GET", "k"), cmd("GET", "missing"), cmd("SADD", "s", "a", "b"),
                  cmd("SMEMBERS", "s"), cmd("INCRBYFLOAT", "f", "1.5"), cmd("HSET", "h", "a", "1"),
                  cmd("HGETALL", "h"), cmd("CONFIG", "GET", "maxmemory*"), cmd("INFO", "server"),
                  cmd("LPOP", "nolist"), cmd("SET", "k", "w"), cmd("PING"))
        captures["replies"] = misc.got
        resp2 = Conn(port)
        resp2.send(cmd("GET", "missing"), cmd("LRANGE", "nolist", "0", "-1"),
                   cmd("BLPOP", "nolist", "0.01"), cmd("PING"))
        captures["resp2_nulls"] = resp2.got
    finally:
        redis.terminate()
        redis.wait()

    for name, got in captures.items():
        assert got, name
        for pick, cut in [(2, 128), (0, 64), (1, 200)]:
            with open(os.path.join(out_dir, f"{name}-{pick}"), "wb") as f:
                f.write(bytes([pick, cut]) + got)
    print(f"{len(captures) * 3} seeds in {out_dir}")


if __name__ == "__main__":
    main()
