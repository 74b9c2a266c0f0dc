"""permessage-deflate (RFC 7692) conformance and interop: the Python `websockets` client (its
own zlib-based permessage-deflate) against `wsloop echo --deflate ...`, plus raw-socket cases.

Run with pytest (`python3 -m pytest tests/python/test_deflate.py -q`) or directly
(`python3 tests/python/test_deflate.py`). The server binary is `$WSLOOP_BIN` (default
`<repo>/target/debug/wsloop`); servers listen on ephemeral ports and are killed at the end.

What is checked:
* negotiation: every offer of server/client_no_context_takeover (on/off) ×
  server_max_window_bits (absent, 9..15) × client_max_window_bits (absent, no value, 9..15),
  against shared (default) and dedicated (`--deflate-context-takeover`) servers, with full
  and reduced (`--deflate-window-bits 10`) windows: the response parameters are exactly the
  ones RFC 7692 §7.1 allows and the server's policy picks, and messages round-trip (Python
  inflates with the *agreed* window, so a server compressing with a larger one fails);
* messages of many sizes (0 … 1 MiB), compressible and random, text and binary, fragmented;
  server frames carry RSV1 exactly when the payload is at least the min size (128) and
  compressible;
* invalid offers are declined (no extension) and the upgrade still happens;
* raw frames: RSV1 on a control frame / a continuation / without negotiation → 1002,
  corrupt deflate data → 1002, invalid UTF-8 inside compressed text → 1007, a 16 KiB
  frame inflating past the 16 MiB limit → 1009, and a 1 MiB message (16 KiB fragments)
  inflating to 1 GiB → 1009 with the server's peak RSS bounded.
"""

import asyncio
import base64
import functools
import os
import random
import socket
import struct
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_interop import MiB, T, Server, bytes_of, text_of  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory  # noqa: E402

# --------------------------------------------------------------------------- servers

SHARED = ("--deflate",)
DEDICATED = ("--deflate", "--deflate-context-takeover")
SHARED_W10 = ("--deflate", "--deflate-window-bits", "10")
DEDICATED_W10 = ("--deflate", "--deflate-context-takeover", "--deflate-window-bits", "10")
MODES = [SHARED, DEDICATED, SHARED_W10, DEDICATED_W10]
MIN_SIZE = 128  # the server's default --deflate-min-size

_servers = {}


def server(*flags, mode="echo"):
    key = (mode, flags)
    if key not in _servers:
        _servers[key] = Server(mode, *flags)
    s = _servers[key]
    assert s.alive(), f"wsloop {mode} {flags} died (exit {s.proc.returncode})"
    return s


def stop_servers():
    for s in _servers.values():
        s.kill()
    _servers.clear()


def teardown_module(_module=None):
    dead = [k for k, s in _servers.items() if not s.alive()]
    stop_servers()
    assert not dead, f"servers died: {dead}"


def run(coro, limit=300):
    return asyncio.run(asyncio.wait_for(coro, limit))


def server_config(flags):
    """(no context takeover answered always, window bits) for a server's flags."""
    shared = "--deflate-context-takeover" not in flags
    bits = int(flags[flags.index("--deflate-window-bits") + 1]) if "--deflate-window-bits" in flags else 15
    return shared, bits


# --------------------------------------------------------------------------- the expected answer


def expected_answer(offer, flags):
    """The parameters the server must answer to a valid `offer` (dict: name → value or None).

    RFC 7692 §7.1 leaves the server these choices, and wsloop's policy picks:
    * server_no_context_takeover: required if offered (§7.1.1.1); added when the server runs
      without context takeover (shared compressor).
    * client_no_context_takeover: echoed if offered; added when the server runs shared.
    * server_max_window_bits: if offered, a value ≤ the offered one (§7.1.2.1), here
      min(offered, server window); if not offered, the server's window when below 15.
    * client_max_window_bits: only if offered (§7.1.2.2); with a value ≤ the offered one,
      here min(offered or 15, server window), left out when that is 15 and no value came.
    """
    shared, bits = server_config(flags)
    out = {}
    if offer.get("server_no_context_takeover", False) is not False or shared:
        out["server_no_context_takeover"] = None
    if offer.get("client_no_context_takeover", False) is not False or shared:
        out["client_no_context_takeover"] = None
    smwb = offer.get("server_max_window_bits")
    if smwb is not None:
        out["server_max_window_bits"] = str(min(int(smwb), bits))
    elif bits < 15:
        out["server_max_window_bits"] = str(bits)
    if "client_max_window_bits" in offer:
        v = offer["client_max_window_bits"]
        c = min(int(v) if v is not None else 15, bits)
        if v is not None or c < 15:
            out["client_max_window_bits"] = str(c)
    return out


def check_rfc(offer, answer):
    """Constraints RFC 7692 puts on any answer, independent of the server's policy."""
    if "server_no_context_takeover" in offer:
        assert "server_no_context_takeover" in answer, (offer, answer)
    if "server_max_window_bits" in offer:
        assert "server_max_window_bits" in answer, (offer, answer)
        assert int(answer["server_max_window_bits"]) <= int(offer["server_max_window_bits"])
    if "client_max_window_bits" not in offer:
        assert "client_max_window_bits" not in answer, (offer, answer)
    elif offer["client_max_window_bits"] is not None and "client_max_window_bits" in answer:
        assert int(answer["client_max_window_bits"]) <= int(offer["client_max_window_bits"])
    for k, v in answer.items():
        if k.endswith("no_context_takeover"):
            assert v is None, (k, v)
        else:
            assert v is not None and 8 <= int(v) <= 15 and str(int(v)) == v, (k, v)


def parse_extensions(value):
    """`Sec-WebSocket-Extensions` response value → [(name, {param: value or None})]; a
    repeated parameter fails the test."""
    if value is None:
        return []
    exts = []
    for ext in value.split(","):
        parts = [p.strip() for p in ext.split(";")]
        params = {}
        for p in parts[1:]:
            name, _, v = p.partition("=")
            name = name.strip()
            assert name not in params, f"parameter {name} twice in {value!r}"
            params[name] = v.strip().strip('"') if _ else None
        exts.append((parts[0], params))
    return exts


def only_deflate(value):
    exts = parse_extensions(value)
    assert len(exts) == 1 and exts[0][0] == "permessage-deflate", value
    return exts[0][1]


def offers():
    """Every combination the Python client can offer (it refuses window 8 itself)."""
    for snc in (False, True):
        for cnc in (False, True):
            for smwb in [None, *range(9, 16)]:
                for cmwb in [None, True, *range(9, 16)]:
                    yield snc, cnc, smwb, cmwb


def offer_dict(snc, cnc, smwb, cmwb):
    d = {}
    if snc:
        d["server_no_context_takeover"] = None
    if cnc:
        d["client_no_context_takeover"] = None
    if smwb is not None:
        d["server_max_window_bits"] = str(smwb)
    if cmwb is True:
        d["client_max_window_bits"] = None
    elif cmwb is not None:
        d["client_max_window_bits"] = str(cmwb)
    return d


# --------------------------------------------------------------------------- the client


def deflate_connect(url, snc=False, cnc=False, smwb=None, cmwb=True, **kw):
    kw.setdefault("max_size", 32 * MiB)
    factory = ClientPerMessageDeflateFactory(
        server_no_context_takeover=snc,
        client_no_context_takeover=cnc,
        server_max_window_bits=smwb,
        client_max_window_bits=cmwb,
    )
    return connect(
        url,
        compression=None,
        extensions=[factory],
        open_timeout=T,
        close_timeout=T,
        ping_interval=None,
        **kw,
    )


def record_rsv1(ws):
    """Wraps the connection's permessage-deflate decoder to record, per received message,
    whether its first frame had RSV1 set. Returns the list it appends to."""
    seen = []
    (ext,) = ws.protocol.extensions
    decode = ext.decode

    def wrapped(frame, **kw):
        if frame.opcode.name in ("TEXT", "BINARY"):
            seen.append(frame.rsv1)
        return decode(frame, **kw)

    ext.decode = wrapped
    return seen


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), T)


@functools.lru_cache(maxsize=64)
def compressible_text(n):
    """JSON-like text of exactly `n` UTF-8 bytes, with multi-byte characters."""
    parts = []
    size = i = 0
    while size < n:
        rec = f'{{"id":{i},"user":"usér{i % 7}","text":"message {i % 13} €"}},'
        parts.append(rec)
        size += len(rec.encode())
        i += 1
    return fit("".join(parts), n)


def fit(s, n):
    """`s` cut to at most `n` UTF-8 bytes at a character boundary, padded with `x` to `n`."""
    t = s.encode()[:n].decode(errors="ignore")
    return t + "x" * (n - len(t.encode()))


def random_text(n, rng):
    """`n` UTF-8 bytes of random characters (1 to 4 bytes each): barely compressible."""
    chars = [chr(c) for c in range(0x20, 0x7F)] + ["é", "€", "𝄞", "ж"]
    return fit("".join(rng.choices(chars, k=n)), n)


SIZES = [0, 1, 127, 128, 1000, 65536, MiB]


def payloads(rng):
    """(description, payload, compressible) for every size × kind × text/binary."""
    for n in SIZES:
        yield f"text {n} compressible", compressible_text(n), True
        yield f"binary {n} compressible", compressible_text(n).encode(), True
        yield f"binary {n} pattern", bytes_of(n), False
        yield f"text {n} random", random_text(n, rng), False
        yield f"binary {n} random", rng.randbytes(n), False


# --------------------------------------------------------------------------- negotiation matrix


def test_negotiation_matrix_every_window_and_takeover():
    """288 offers × 4 server configurations, each answered exactly and then used both ways
    (a compressible message above the min size and a short one)."""
    msg = compressible_text(3000)

    async def go():
        count = 0
        for flags in MODES:
            url = server(*flags).url
            for snc, cnc, smwb, cmwb in offers():
                async with deflate_connect(url, snc, cnc, smwb, cmwb) as ws:
                    offer = offer_dict(snc, cnc, smwb, cmwb)
                    got = only_deflate(ws.response.headers.get("Sec-WebSocket-Extensions"))
                    check_rfc(offer, got)
                    assert got == expected_answer(offer, flags), (flags, offer, got)
                    rsv1 = record_rsv1(ws)
                    for m in (msg, msg + "!", "short"):
                        await ws.send(m)
                        assert await recv(ws) == m, (flags, offer)
                    assert rsv1 == [True, True, False], (flags, offer, rsv1)
                count += 1
        assert count == 4 * 288

    run(go(), limit=900)


def test_sizes_kinds_and_fragmentation():
    """Many sizes, compressible and random, text and binary, whole and fragmented, over one
    connection per offer (so dedicated contexts carry across every message)."""
    offer_set = [
        (False, False, None, True),
        (False, False, 9, 9),
        (True, True, 12, None),
        (False, True, None, 10),
        (True, False, 15, 15),
    ]

    async def go():
        for flags in [SHARED, DEDICATED, DEDICATED_W10]:
            url = server(*flags).url
            shared, _ = server_config(flags)
            for snc, cnc, smwb, cmwb in offer_set:
                rng = random.Random(f"{flags}{snc}{cnc}{smwb}{cmwb}")
                async with deflate_connect(url, snc, cnc, smwb, cmwb) as ws:
                    server_resets = "server_no_context_takeover" in only_deflate(
                        ws.response.headers.get("Sec-WebSocket-Extensions")
                    )
                    rsv1 = record_rsv1(ws)
                    for what, p, compressible in payloads(rng):
                        await ws.send(p)
                        got = await recv(ws)
                        assert type(got) is type(p) and got == p, (flags, what, len(got))
                        n = len(p.encode()) if isinstance(p, str) else len(p)
                        if n < MIN_SIZE:
                            assert rsv1[-1] is False, (flags, what)
                        elif compressible:
                            assert rsv1[-1] is True, (flags, what)
                        elif not server_resets:
                            # A dedicated compressor sends every message above the size
                            # compressed (its context moved on); a shared one may not.
                            assert rsv1[-1] is True, (flags, what)
                    # Fragmented compressed messages (RSV1 on the first frame only).
                    parts = [compressible_text(5000), "", "frag", random_text(70000, rng), "𝄞 end"]
                    await ws.send(parts)
                    assert await recv(ws) == "".join(parts)
                    bparts = [b"\x00\x01", b"", bytes_of(65536), rng.randbytes(3000)]
                    await ws.send(bparts)
                    assert await recv(ws) == b"".join(bparts)

                    async def gen():
                        for i in range(40):
                            if i == 20:
                                await asyncio.wait_for(await ws.ping(b"mid"), T)
                            yield f'{{"i":{i},"pad":"{"y" * (i * 10)}"}},'

                    await ws.send(gen())
                    assert await recv(ws) == "".join(
                        f'{{"i":{i},"pad":"{"y" * (i * 10)}"}},' for i in range(40)
                    )
                    await ws.send("after")
                    assert await recv(ws) == "after"
                    await asyncio.wait_for(ws.close(1000, ""), T)
                    assert ws.close_code == 1000
            assert shared == ("--deflate-context-takeover" not in flags)

    run(go(), limit=900)


def test_without_deflate_flag_the_offer_is_declined():
    url = server(mode="echo").url

    async def go():
        async with deflate_connect(url) as ws:
            assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
            await ws.send(compressible_text(1000))
            assert await recv(ws) == compressible_text(1000)

    run(go())


# --------------------------------------------------------------------------- raw sockets


def raw_handshake(addr, extensions=None, extra=b""):
    """Opens a TCP connection and upgrades; returns (socket, status line, headers dict of
    lowercase name → list of values, bytes read past the head)."""
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=T)
    key = base64.b64encode(os.urandom(16))
    req = b"GET / HTTP/1.1\r\nHost: " + addr.encode() + b"\r\nUpgrade: websocket\r\n"
    req += b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n"
    if extensions is not None:
        lines = extensions if isinstance(extensions, list) else [extensions]
        for e in lines:
            req += b"Sec-WebSocket-Extensions: " + e.encode() + b"\r\n"
    s.sendall(req + extra + b"\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        assert chunk, f"connection closed during the handshake: {buf!r}"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    return s, lines[0], headers, rest


def answer_of(addr, extensions):
    s, status, headers, _ = raw_handshake(addr, extensions)
    s.close()
    assert status.startswith("HTTP/1.1 101"), (extensions, status)
    ext = headers.get("sec-websocket-extensions")
    if ext is None:
        return None
    assert len(ext) == 1, ext
    return only_deflate(ext[0])


def test_invalid_offers_are_declined_but_the_upgrade_happens():
    addr = server(*SHARED).addr
    declined = [
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=11",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits=abc",
        "permessage-deflate; client_max_window_bits=",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; unknown_param",
        "permessage-deflate; x=1",
        "permessage-deflate; server_max_window_bits=8",  # zlib cannot compress with 8
        "x-webkit-deflate-frame",
        "permessage-foo",
    ]
    for offer in declined:
        assert answer_of(addr, offer) is None, offer
    # An invalid offer is skipped and the next acceptable one taken (§5 order).
    got = answer_of(addr, "permessage-deflate; bogus, permessage-deflate; server_max_window_bits=11")
    assert got == {
        "server_no_context_takeover": None,
        "client_no_context_takeover": None,
        "server_max_window_bits": "11",
    }, got
    got = answer_of(addr, ["foo", "permessage-deflate; server_max_window_bits=16", "permessage-deflate"])
    assert got == {"server_no_context_takeover": None, "client_no_context_takeover": None}, got
    # Quoted values are allowed (RFC 7692 §7.1 grammar).
    got = answer_of(addr, 'permessage-deflate; client_max_window_bits="12"')
    assert got == {
        "server_no_context_takeover": None,
        "client_no_context_takeover": None,
        "client_max_window_bits": "12",
    }, got
    # No offer: no extension.
    assert answer_of(addr, None) is None


def test_client_window_8_is_never_answered_above_8():
    """§7.1.2.2: an answered client_max_window_bits is at most the offered value."""
    for flags in MODES:
        addr = server(*flags).addr
        got = answer_of(addr, "permessage-deflate; client_max_window_bits=8")
        assert got is not None, flags
        check_rfc({"client_max_window_bits": "8"}, got)


def mask_frame(b0, payload, mask=b"\x11\x22\x33\x44"):
    """A client frame: first header byte `b0` (FIN, RSV, opcode), masked `payload`."""
    n = len(payload)
    if n < 126:
        head = bytes([b0, 0x80 | n])
    elif n < 65536:
        head = bytes([b0, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, 0x80 | 127]) + struct.pack(">Q", n)
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return head + mask + masked


def deflate_raw(data, wbits=15):
    c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def read_until_close(s, rest=b""):
    """Reads server frames until a close frame; returns (close code, data frames' first
    bytes). Fails if the server closes TCP without a close frame."""
    buf = rest
    firsts = []
    while True:
        while len(buf) < 2 or len(buf) < _frame_len(buf):
            chunk = s.recv(65536)
            assert chunk, f"TCP closed without a close frame (had {buf[:16]!r})"
            buf += chunk
        n = _frame_len(buf)
        frame, buf = buf[:n], buf[n:]
        op = frame[0] & 0x0F
        hl = n - _payload_len(frame)
        if op == 0x8:
            payload = frame[hl:]
            return (struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None), firsts
        firsts.append(frame[0])


def _payload_len(b):
    n = b[1] & 0x7F
    if n == 126:
        return struct.unpack(">H", b[2:4])[0]
    if n == 127:
        return struct.unpack(">Q", b[2:10])[0]
    return n


def _frame_len(b):
    if len(b) < 2:
        return 2
    n = b[1] & 0x7F
    hl = 2 + (2 if n == 126 else 8 if n == 127 else 0)
    if len(b) < hl:
        return hl
    return hl + _payload_len(b)


OFFER = "permessage-deflate; client_no_context_takeover; server_no_context_takeover"


def expect_close(flags, frames, code, extensions=OFFER):
    addr = server(*flags).addr
    s, status, headers, rest = raw_handshake(addr, extensions)
    try:
        assert status.startswith("HTTP/1.1 101"), status
        s.sendall(b"".join(frames))
        got, _ = read_until_close(s, rest)
        assert got == code, (frames[0][:4], got, code)
    finally:
        s.close()


FIN, RSV1 = 0x80, 0x40


def test_rsv1_rules():
    z = deflate_raw(b"Hello, compressed world" * 10)
    for flags in (SHARED, DEDICATED):
        # Sanity: a proper compressed text message is echoed.
        addr = server(*flags).addr
        s, status, _, rest = raw_handshake(addr, OFFER)
        s.sendall(mask_frame(FIN | RSV1 | 0x1, z) + mask_frame(FIN | 0x8, struct.pack(">H", 1000)))
        code, firsts = read_until_close(s, rest)
        s.close()
        assert code == 1000 and firsts == [FIN | RSV1 | 0x1], (code, firsts)
        # RSV1 on a control frame.
        for op in (0x8, 0x9, 0xA):
            expect_close(flags, [mask_frame(FIN | RSV1 | op, b"")], 1002)
        # RSV1 on a continuation frame.
        half = len(z) // 2
        expect_close(flags, [mask_frame(RSV1 | 0x1, z[:half]), mask_frame(FIN | RSV1 | 0x0, z[half:])], 1002)
        expect_close(flags, [mask_frame(0x2, b"ab"), mask_frame(FIN | RSV1 | 0x0, b"cd")], 1002)
        # RSV2 / RSV3 are never negotiated.
        expect_close(flags, [mask_frame(FIN | 0x20 | 0x1, b"x")], 1002)
        expect_close(flags, [mask_frame(FIN | 0x10 | 0x2, b"x")], 1002)
    # RSV1 without negotiation: with a --deflate server that got no offer, and without --deflate.
    expect_close(SHARED, [mask_frame(FIN | RSV1 | 0x1, z)], 1002, extensions=None)
    expect_close((), [mask_frame(FIN | RSV1 | 0x1, z)], 1002, extensions=OFFER)


def test_corrupt_data_and_invalid_text():
    for flags in (SHARED, DEDICATED):
        # BTYPE 11 (reserved) → 1002.
        expect_close(flags, [mask_frame(FIN | RSV1 | 0x2, b"\xff\xff\xff")], 1002)
        # A stored block announcing more bytes than follow: incomplete → 1002.
        expect_close(flags, [mask_frame(FIN | RSV1 | 0x2, b"\x00\x05\x00\xfa\xffHe")], 1002)
        # Invalid UTF-8 inside compressed text → 1007; the same bytes as binary are fine.
        bad = deflate_raw(b"valid start " * 20 + b"\xc3\x28 then more")
        expect_close(flags, [mask_frame(FIN | RSV1 | 0x1, bad)], 1007)
        # ... split across fragments of a compressed message.
        expect_close(flags, [mask_frame(RSV1 | 0x1, bad[:7]), mask_frame(FIN | 0x0, bad[7:])], 1007)
        addr = server(*flags).addr
        s, _, _, rest = raw_handshake(addr, OFFER)
        s.sendall(mask_frame(FIN | RSV1 | 0x2, bad) + mask_frame(FIN | 0x8, struct.pack(">H", 1000)))
        code, firsts = read_until_close(s, rest)
        s.close()
        assert code == 1000 and len(firsts) == 1, (code, firsts)


def vm_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def zeros_deflated(total, piece=MiB):
    """Raw deflate of `total` zero bytes (a multiple of `piece`), tail stripped: one
    piece compressed and sync-flushed (byte-aligned, self-contained for zeros) and repeated,
    so 1 GiB takes a moment and no memory."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    one = c.compress(bytes(piece)) + c.flush(zlib.Z_SYNC_FLUSH)
    assert one.endswith(b"\x00\x00\xff\xff")
    return (one * (total // piece))[:-4]


def test_bomb_16kib_frame_past_the_limit_is_1009():
    """A single 16 KiB frame that inflates to ~16.5 MB (deflate's ~1030:1 at most), past the
    default 16 MiB limit → 1009."""
    total = 16 * MiB + 64 * 1024
    z = zeros_deflated(total, piece=total)
    assert len(z) <= 16 * 1024, len(z)
    for flags in (SHARED, DEDICATED):
        expect_close(flags, [mask_frame(FIN | RSV1 | 0x2, z)], 1009)


def test_bomb_1gib_closes_1009_with_bounded_rss():
    """A 1 MiB compressed message in 16 KiB fragments that inflates to 1 GiB: closed with
    1009 and the server's peak RSS (VmHWM) grows by less than 64 MiB. A fresh server, so
    its peak is this test's."""
    z = zeros_deflated(1 << 30)
    assert len(z) < 2 * MiB, len(z)
    piece = 16 * 1024
    frames = []
    for i in range(0, len(z), piece):
        first, last = i == 0, i + piece >= len(z)
        b0 = (FIN if last else 0) | (RSV1 | 0x2 if first else 0x0)
        frames.append(mask_frame(b0, z[i : i + piece]))
    for flags in (SHARED, DEDICATED):
        srv = Server("echo", *flags)
        try:
            pid = srv.proc.pid
            # Warm up: one ordinary compressed message, so the baseline includes the loop's
            # deflate state.
            s, _, _, rest = raw_handshake(srv.addr, OFFER)
            s.sendall(mask_frame(FIN | RSV1 | 0x1, deflate_raw(b"warm " * 100)))
            s.sendall(mask_frame(FIN | 0x8, struct.pack(">H", 1000)))
            assert read_until_close(s, rest)[0] == 1000
            s.close()
            before = vm_kib(pid, "VmRSS")
            s, status, _, rest = raw_handshake(srv.addr, OFFER)
            assert status.startswith("HTTP/1.1 101")
            try:
                s.sendall(b"".join(frames))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may close before reading everything
            code, _ = read_until_close(s, rest)
            s.close()
            assert code == 1009, code
            peak = vm_kib(pid, "VmHWM")
            after = vm_kib(pid, "VmRSS")
            print(f"{flags}: RSS before {before} KiB, peak {peak} KiB, after {after} KiB")
            assert peak - before < 64 * 1024, (before, peak)
            assert srv.alive()
        finally:
            srv.kill()


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
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(_main())
