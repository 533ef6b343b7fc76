#!/usr/bin/python3
"""spec_probe: checks, one by one, what docs/protocol.md says the gateway does.

Not part of CTest (it is a diagnostic used to write the interop report): each
probe opens its own raw connection with pyagent's WebSocket code, does one
thing the specification describes, and prints what the spec expects next to
what the gateway did. Usage:

    spec_probe.py --build-dir BUILD [--only NAME ...] [-v]

It starts its own gateway (loopback, ports chosen by binding port 0) with small
limits, and stops it at the end.
"""

import argparse
import asyncio
import hashlib
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pyagent  # noqa: E402
from pyagent import WebSocket, PeerClosed, control, data_frame, frame  # noqa: E402

TOKEN = "probe-token"
RESULTS = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Raw:
    """A hand-driven agent connection."""

    def __init__(self, env):
        self.env = env
        self.ws = None
        self.pending = []
        self.closed = None

    async def connect(self, path="/muxgate", protocols=(pyagent.SUBPROTOCOL,)):
        ctx = ssl.create_default_context(cafile=self.env.cert)
        self.ws = await WebSocket.connect("127.0.0.1", self.env.port, path, ctx, 64 << 20, 5,
                                          protocols=protocols)
        return self

    async def send(self, *frames, fragment=0):
        await self.ws.send_binary(b"".join(frames), fragment=fragment)

    async def send_raw_message(self, payload):
        await self.ws.send_binary(payload)

    async def next(self, timeout=3.0):
        """Next muxgate frame as (pid, obj-or-bytes)."""
        while not self.pending:
            if self.closed is not None:
                raise PeerClosed(*self.closed)
            try:
                msg = await asyncio.wait_for(self.ws.recv(), timeout)
            except PeerClosed as e:
                self.closed = (e.code, e.reason)
                raise
            for pid, payload in pyagent.parse_message(msg, 1 << 30, 1 << 30):
                if pid == 0:
                    self.pending.append((0, json.loads(bytes(payload))))
                else:
                    self.pending.append((pid, bytes(payload)))
        return self.pending.pop(0)

    async def expect(self, types, timeout=3.0, skip=("Heartbeat", "Window"), stream=None):
        """Next control message whose type is in `types` (skipping heartbeats, and
        stream messages for other streams than `stream` when it is given)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError()
            pid, m = await self.next(left)
            if pid == 0 and stream is not None and "stream" in m and m["stream"] != stream:
                continue
            if pid == 0 and m["type"] in types:
                return m
            if pid == 0 and m["type"] == "Heartbeat":
                await self.send(control({"type": "HeartbeatAck", "seq": m.get("seq", 0)}))
            if pid == 0 and m["type"] in skip:
                continue
            if pid != 0:
                continue
            raise AssertionError("unexpected %r while waiting for %s" % (m, types))

    async def until_close(self, timeout=5.0, ack=True):
        """Read until the gateway closes; returns (code, reason, [control msgs seen])."""
        seen = []
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return ("timeout", "", seen)
                pid, m = await self.next(left)
                if pid == 0:
                    seen.append(m)
                    if ack and m["type"] == "Heartbeat":
                        await self.send(control({"type": "HeartbeatAck", "seq": m.get("seq", 0)}))
        except PeerClosed as e:
            return (e.code, e.reason, seen)
        except asyncio.TimeoutError:
            return ("timeout", "", seen)
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            return ("tcp-closed-without-close-frame", str(e), seen)

    async def auth(self, name="probe", window=16384, max_frame=16384, max_message=65536, **over):
        m = {"type": "Auth", "token": TOKEN, "agent": name, "version": "probe", "protocol": 1,
             "window": window, "max_frame": max_frame, "max_message": max_message}
        m.update(over)
        await self.send(control(m))
        try:
            return await self.expect(("AuthOk", "AuthError", "Error"))
        except PeerClosed as e:
            return {"type": "(closed %s %s)" % (e.code, e.reason)}

    async def register(self, tunnel="t", rid=1, protocol_id=3, remote_port=0, **over):
        m = {"type": "Register", "id": rid, "tunnel": tunnel, "protocol_id": protocol_id,
             "remote_port": remote_port, "options": {}}
        m.update(over)
        await self.send(control(m))
        return await self.expect(("Registered", "RegisterError"))

    def close(self):
        if self.ws:
            self.ws.abort()


def record(name, expected, observed, ok):
    RESULTS.append((name, expected, observed, ok))
    print("%-4s %-34s expected: %s\n     %-34s observed: %s" % (
        "ok" if ok else "DIFF", name, expected, "", observed), flush=True)


def addr(a):
    h, p = a.rsplit(":", 1)
    return h, int(p)


async def public_connect(address):
    h, p = addr(address)
    return await asyncio.open_connection(h, p)


async def get_open(r):
    return await r.expect(("Open",), timeout=5)


# ───────────────────────────── probes ─────────────────────────────

async def p_http_statuses(env):
    async def raw_http(req):
        ctx = ssl.create_default_context(cafile=env.cert)
        rd, wr = await asyncio.open_connection("127.0.0.1", env.port, ssl=ctx, server_hostname="127.0.0.1")
        wr.write(req)
        await wr.drain()
        data = b""
        try:
            while True:
                d = await asyncio.wait_for(rd.read(65536), 3)
                if not d:
                    break
                data += d
        except (asyncio.TimeoutError, ConnectionError, ssl.SSLError):
            pass
        wr.transport.abort()
        return data
    base = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n")
    r = await raw_http((base % ("/other", "Sec-WebSocket-Protocol: muxgate.v1\r\n")).encode())
    record("http: other path", "404", r.split(b"\r\n")[0].decode(), b" 404 " in r.split(b"\r\n")[0])
    r = await raw_http(b"GET /muxgate HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    record("http: no upgrade", "426", r.split(b"\r\n")[0].decode(), b" 426 " in r.split(b"\r\n")[0])
    r = await raw_http((base % ("/muxgate", "Sec-WebSocket-Protocol: other.v9\r\n")).encode())
    body = r.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in r else b""
    record("http: wrong subprotocol", "400 + body naming muxgate.v1",
           "%s body=%r" % (r.split(b"\r\n")[0].decode(), body[:100]),
           b" 400 " in r.split(b"\r\n")[0] and b"muxgate.v1" in body)
    r = await raw_http((base % ("/muxgate", "")).encode())
    record("http: no subprotocol offered", "400", r.split(b"\r\n")[0].decode(), b" 400 " in r.split(b"\r\n")[0])
    r = await raw_http((base % ("/muxgate", "Sec-WebSocket-Protocol: muxgate.v1\r\nX-Big: " + "a" * 9000 + "\r\n")).encode())
    record("http: head > 8 KiB", "431", r.split(b"\r\n")[0].decode(), b" 431 " in r.split(b"\r\n")[0])
    r = await raw_http((base % ("/muxgate", "Sec-WebSocket-Protocol: foo, muxgate.v1\r\n")).encode())
    record("http: muxgate.v1 among several", "101 naming muxgate.v1", r.split(b"\r\n")[0].decode(),
           b" 101 " in r.split(b"\r\n")[0] and b"Sec-WebSocket-Protocol: muxgate.v1" in r)
    r = await raw_http((base % ("/muxgate", "Sec-WebSocket-Protocol: muxgate.v1\r\n"
                                "Sec-WebSocket-Extensions: permessage-deflate\r\n")).encode())
    record("http: permessage-deflate offered", "101 without extensions",
           r.split(b"\r\n\r\n")[0].decode().replace("\r\n", " | "),
           b" 101 " in r.split(b"\r\n")[0] and b"xtensions" not in r)
    r = await raw_http((base % ("/muxgate/", "Sec-WebSocket-Protocol: muxgate.v1\r\n")).encode())
    record("http: path with trailing slash", "(unspecified) 404?", r.split(b"\r\n")[0].decode(), True)
    r = await raw_http((base % ("/muxgate?x=1", "Sec-WebSocket-Protocol: muxgate.v1\r\n")).encode())
    record("http: path with query", "(unspecified)", r.split(b"\r\n")[0].decode(), True)


async def p_preauth(env):
    r = await Raw(env).connect()
    await r.ws.send_binary(b"")  # empty binary message before auth
    code, reason, seen = await r.until_close()
    record("pre-auth: empty message", "1002 (section 2) or 1008 (section 4)?",
           "%s %r %s" % (code, reason, [m.get("type") + ":" + str(m.get("code")) for m in seen]), code in (1002, 1008))
    r.close()

    r = await Raw(env).connect()
    await r.send(control({"type": "Register", "id": 1, "tunnel": "x", "protocol_id": 3}))
    code, reason, seen = await r.until_close()
    record("pre-auth: Register", "Error? + close 1008", "%s %r %s" % (code, reason, seen), code == 1008)
    r.close()

    r = await Raw(env).connect()
    await r.send(data_frame(3, 1, b"x"))
    code, reason, seen = await r.until_close()
    record("pre-auth: data frame", "close 1008", "%s %r %s" % (code, reason, seen), code == 1008)
    r.close()

    r = await Raw(env).connect()
    await r.send(control({"type": "Nonsense"}))
    code, reason, seen = await r.until_close()
    record("pre-auth: unknown type", "protocol error: 1002 (sec 3) vs 1008 (sec 4)",
           "%s %r %s" % (code, reason, seen), code in (1002, 1008))
    r.close()

    r = await Raw(env).connect()
    t0 = time.monotonic()
    code, reason, seen = await r.until_close(timeout=10)
    record("pre-auth: no Auth", "close 4001 after auth_timeout_ms (1500)",
           "%s %r after %.1fs %s" % (code, reason, time.monotonic() - t0, seen), code == 4001)
    r.close()

    r = await Raw(env).connect()
    m = await r.auth(protocol=2)
    code, reason, seen = await r.until_close()
    record("auth: protocol 2", "AuthError unsupported_version, close 4005",
           "%s; close %s %r" % (m, code, reason), m.get("code") == "unsupported_version" and code == 4005)
    r.close()

    r = await Raw(env).connect()
    m = await r.auth(token="wrong")
    code, reason, seen = await r.until_close()
    record("auth: bad token", "AuthError bad_token, close 4002",
           "%s; close %s %r" % (m, code, reason), m.get("code") == "bad_token" and code == 4002)
    r.close()

    r = await Raw(env).connect()
    m = await r.auth(name="bad name!")
    code, reason, seen = await r.until_close()
    record("auth: bad name", "AuthError bad_name, close 1008",
           "%s; close %s %r" % (m, code, reason), m.get("code") == "bad_name" and code == 1008)
    r.close()

    r = await Raw(env).connect()
    m = await r.auth(max_frame=1000)
    code, reason, seen = await r.until_close()
    record("auth: max_frame 1000", "AuthError bad_limits, close 1008",
           "%s; close %s %r" % (m, code, reason), m.get("code") == "bad_limits" and code == 1008)
    r.close()

    r = await Raw(env).connect()
    m = await r.auth(max_frame=16384, max_message=16389)
    code, reason, seen = await r.until_close()
    record("auth: max_message == max_frame+5", "AuthError bad_limits (must be > max_frame+5)",
           "%s; close %s %r" % (m, code, reason), m.get("code") == "bad_limits")
    r.close()

    r = await Raw(env).connect()
    m = await r.auth(window=1000)
    code, reason, seen = await r.until_close()
    record("auth: window 1000", "AuthOk (spec: window >= 1)",
           "%s; close %s %r" % (m, code, reason), m.get("type") == "AuthOk")
    r.close()

    for extra in (2, 3, 4):
        r = await Raw(env).connect()
        m = await r.auth(max_frame=16384, max_message=16384 + extra, name="mm%d" % extra)
        record("auth: max_message == max_frame+%d" % extra, "AuthError bad_limits (spec: must be > max_frame+5)",
               "%s" % m.get("code", m.get("type")), m.get("code") == "bad_limits")
        r.close()
    r = await Raw(env).connect()
    m = await r.auth(max_frame=16384, max_message=16385, name="mm1")
    record("auth: max_message == max_frame+1", "AuthError bad_limits (must be > max_frame+5)",
           "%s" % m, m.get("code") == "bad_limits")
    r.close()

    r = await Raw(env).connect()
    m = await r.auth(window=0)
    code, reason, seen = await r.until_close()
    record("auth: window 0", "AuthError bad_limits, close 1008",
           "%s; close %s %r" % (m, code, reason), m.get("code") == "bad_limits" and code == 1008)
    r.close()

    r = await Raw(env).connect()
    m = await r.auth(window="big")
    code, reason, seen = await r.until_close()
    record("auth: window is a string", "(malformed Auth: unspecified code)",
           "%s; close %s %r" % (m, code, reason), True)
    r.close()

    r = await Raw(env).connect()
    m = await r.auth(protocol=1, extra_field={"x": 1}, name="probe-x")
    record("auth: unknown field", "ignored -> AuthOk", m.get("type"), m.get("type") == "AuthOk")
    r.close()

    r = await Raw(env).connect()
    m = await r.auth(name="a" * 65)
    code, reason, seen = await r.until_close()
    record("auth: 65-char name", "AuthError bad_name, close 1008",
           "%s; close %s" % (m.get("code"), code), m.get("code") == "bad_name" and code == 1008)
    r.close()

    r = await Raw(env).connect()
    m = await r.auth(name="A" * 64)
    record("auth: 64-char name", "AuthOk", m.get("type"), m.get("type") == "AuthOk")
    r.close()


async def p_authok_and_heartbeat(env):
    r = await Raw(env).connect()
    m = await r.auth(name="hb")
    record("AuthOk fields", "session heartbeat_ms window max_frame max_message max_streams max_tunnels",
           json.dumps(m), all(k in m for k in ("session", "heartbeat_ms", "window", "max_frame",
                                               "max_message", "max_streams", "max_tunnels")))
    seqs = []
    t0 = time.monotonic()
    while len(seqs) < 3:
        pid, h = await r.next(5)
        if pid == 0 and h["type"] == "Heartbeat":
            seqs.append(h.get("seq"))
            await r.send(control({"type": "HeartbeatAck", "seq": h.get("seq", 0)}))
    record("Heartbeat seq", "increases by one per heartbeat (first value unspecified)",
           "%s, raw=%s" % (seqs, json.dumps(h)), seqs[1] == seqs[0] + 1 and seqs[2] == seqs[1] + 1)
    # now stop acking
    t0 = time.monotonic()
    code, reason, seen = await r.until_close(timeout=10, ack=False)
    record("no HeartbeatAck", "close 4004 after heartbeat_timeout_ms (1500)",
           "%s %r after %.1fs, msgs=%s" % (code, reason, time.monotonic() - t0,
                                           [x["type"] for x in seen]), code == 4004)
    r.close()


async def p_after_auth_errors(env):
    cases = [
        ("second Auth", control({"type": "Auth", "token": TOKEN, "agent": "x", "protocol": 1,
                                 "window": 16384, "max_frame": 16384, "max_message": 65536}), 1002),
        ("Heartbeat from agent", control({"type": "Heartbeat", "seq": 1}), 1002),
        ("Open from agent", control({"type": "Open", "stream": 2, "tunnel": "t", "protocol_id": 3}), 1002),
        ("Register without tunnel", control({"type": "Register", "id": 1, "protocol_id": 3}), 1002),
        ("Window credit 0", control({"type": "Window", "stream": 1, "credit": 0}), 1002),
        ("text message", None, 1003),
        ("empty message", b"", 1002),
        ("truncated header", b"\x00\x00\x00", 1002),
        ("payload past end", b"\x00\x00\x00\x00\x10{}", 1002),
        ("data frame < 4 bytes", b"\x03\x00\x00\x00\x02\x00\x01", 1002),
        ("data frame stream 0", data_frame(3, 0, b"x"), 1002),
        ("frame > max_frame", b"\x03" + struct.pack("!I", 32 * 1024 + 1) + b"\x00\x00\x00\x01" + b"x" * (32 * 1024 - 3), 1009),
        ("control > control limit", frame(0, json.dumps({"type": "Nope", "pad": "x" * 5000}).encode()), 1009),
        ("message > max_message", control({"type": "Nope"}) * 7000, 1009),
        ("JSON not an object", frame(0, b"[1,2]"), 1002),
        ("JSON invalid", frame(0, b"{\"type\":"), 1002),
        ("JSON without type", frame(0, b"{\"x\":1}"), 1002),
        ("data for never-opened odd id", data_frame(3, 1, b"x"), 1002),
        ("Fin for even id", control({"type": "Fin", "stream": 2}), 1002),
        ("HeartbeatAck seq string", control({"type": "HeartbeatAck", "seq": "1"}), 1002),
        ("Register id negative", control({"type": "Register", "id": -1, "tunnel": "t", "protocol_id": 3}), 1002),
        ("Register id 2^32", control({"type": "Register", "id": 2**32, "tunnel": "t", "protocol_id": 3}), 1002),
        ("Register protocol_id 0", control({"type": "Register", "id": 1, "tunnel": "t", "protocol_id": 0}), 1002),
        ("Register remote_port 70000", control({"type": "Register", "id": 1, "tunnel": "t", "protocol_id": 3,
                                                "remote_port": 70000}), 1002),
        ("Register options not object", control({"type": "Register", "id": 1, "tunnel": "t", "protocol_id": 3,
                                                 "options": 5}), 1002),
        ("Register id 1.0 (float)", control({"type": "Register", "id": 1.0, "tunnel": "t", "protocol_id": 3}), 1002),
    ]
    for i, (name, payload, want) in enumerate(cases):
        r = await Raw(env).connect()
        await r.auth(name="ae%d" % i)
        if payload is None:
            r.ws.send_text_nowait('{"type":"HeartbeatAck"}')
        else:
            await r.send_raw_message(payload)
        code, reason, seen = await r.until_close(timeout=4)
        errs = [(m.get("code"), m.get("message")) for m in seen if m["type"] == "Error"]
        record("after auth: " + name, "close %d" % want, "close %s %r; Error msgs: %s" % (code, reason, errs),
               code == want)
        r.close()

    # things that must NOT close
    r = await Raw(env).connect()
    await r.auth(name="ae-ok")
    await r.send(control({"type": "FutureThing", "x": 1}))
    await r.send(control({"type": "HeartbeatAck", "seq": 99999, "extra": [1, 2]}))
    await r.send(control({"type": "Register", "id": 7, "tunnel": "frag", "protocol_id": 3}), fragment=7)
    try:
        m = await r.expect(("Registered", "RegisterError"))
        obs = json.dumps(m)
        ok = m["type"] == "Registered"
    except PeerClosed as e:
        obs, ok = "closed %s %s" % (e.code, e.reason), False
    record("unknown type / extra fields / WS fragmentation", "ignored; Register (fragmented) answered", obs, ok)
    # several frames in one message
    await r.send(control({"type": "Register", "id": 8, "tunnel": "m1", "protocol_id": 3}) +
                 control({"type": "Register", "id": 9, "tunnel": "m2", "protocol_id": 3}))
    a = await r.expect(("Registered", "RegisterError"))
    b = await r.expect(("Registered", "RegisterError"))
    record("two frames in one message", "both answered", "%s / %s" % (a, b),
           a["type"] == b["type"] == "Registered")
    # an empty data frame for an open stream has no effect; Window/Reset/Fin for late streams ignored
    r.close()


async def p_register(env):
    r = await Raw(env).connect()
    await r.auth(name="reg")
    a = await r.register("one", 1)
    b = await r.register("one", 2)
    c = await r.register("bad name", 3)
    d = await r.register("unk", 4, protocol_id=99)
    e = await r.register("two", 5)
    f = await r.register("three", 6)
    g = await r.register("four", 7)
    record("Registered", "id, tunnel, address", json.dumps(a), a["type"] == "Registered" and a["id"] == 1)
    record("Register duplicate", "RegisterError duplicate", json.dumps(b), b.get("code") == "duplicate")
    record("Register bad name", "RegisterError bad_name", json.dumps(c), c.get("code") == "bad_name")
    record("Register protocol 99", "RegisterError unknown_protocol", json.dumps(d), d.get("code") == "unknown_protocol")
    record("Register over max_tunnels (3)", "RegisterError limit", json.dumps(g), g.get("code") == "limit")
    # port in use
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    bp = busy.getsockname()[1]
    await r.send(control({"type": "Unregister", "tunnel": "two"}))
    h = await r.register("busy", 8, remote_port=bp)
    record("Register busy port", "RegisterError port_unavailable", json.dumps(h), h.get("code") == "port_unavailable")
    busy.close()
    # Unregister: the public port stops accepting
    await r.send(control({"type": "Unregister", "tunnel": "one"}))
    await asyncio.sleep(0.3)
    try:
        rd, wr = await public_connect(a["address"])
        try:
            got = await asyncio.wait_for(rd.read(1), 2)
            obs = "connect ok, read %r" % got
        except asyncio.TimeoutError:
            obs = "connect ok, connection stays open"
        wr.transport.abort()
    except OSError as e:
        obs = "connect failed: %s" % e
    record("Unregister", "public port stops accepting", obs, "failed" in obs or "read b''" in obs)
    # Register again with the same name after Unregister
    i = await r.register("one", 9)
    record("re-Register after Unregister", "(unspecified) Registered", json.dumps(i), True)
    # ask for a specific port
    pp = free_port()
    j = await r.register("fixed", 10, remote_port=pp)
    record("Register fixed port", "Registered with that port", json.dumps(j),
           j.get("type") == "Registered" and j["address"].endswith(":%d" % pp))
    r.close()


async def p_streams(env):
    """Stream-level behaviour of the gateway."""
    r = await Raw(env).connect()
    ok = await r.auth(name="st", window=16384)
    gw_window = ok["window"]
    reg = await r.register("s", 1)
    address = reg["address"]

    # 1: Open + early data; ids odd increasing; Open fields
    rd, wr = await public_connect(address)
    wr.write(b"hello")
    await wr.drain()
    o1 = await get_open(r)
    pid, d = await r.next()
    record("Open fields", "stream, tunnel, protocol_id, peer", json.dumps(o1),
           o1["stream"] % 2 == 1 and o1["tunnel"] == "s" and o1["protocol_id"] == 3)
    record("early data before Opened", "data frame pid 3 stream %d 'hello'" % o1["stream"],
           "pid=%s %r" % (pid, d), pid == 3 and d[4:] == b"hello")
    # data before Opened -> Reset{protocol_error}
    await r.send(data_frame(3, o1["stream"], b"x"))
    m = await r.expect(("Reset",), stream=o1["stream"])
    record("agent data before Opened", "Reset protocol_error", json.dumps(m), m.get("code") == "protocol_error")
    try:
        got = await asyncio.wait_for(rd.read(100), 3)
        obs = "read %r (FIN)" % got
    except ConnectionResetError:
        obs = "RST"
    record("public side after Reset", "aborted (RST)", obs, obs == "RST")
    wr.transport.abort()

    # 2: Fin before Opened
    rd, wr = await public_connect(address)
    o = await get_open(r)
    await r.send(control({"type": "Fin", "stream": o["stream"]}))
    m = await r.expect(("Reset",), stream=o["stream"])
    record("agent Fin before Opened", "stream error (Reset, code unspecified)", json.dumps(m), m["type"] == "Reset")
    wr.transport.abort()

    # 3: flow control: exceed the gateway's window
    rd, wr = await public_connect(address)
    o = await get_open(r)
    s = o["stream"]
    await r.send(control({"type": "Opened", "stream": s}))
    # one frame one byte over the window (max_frame is larger than the window here)
    await r.send(data_frame(3, s, b"a" * (gw_window + 1)))
    try:
        m = await r.expect(("Reset",), timeout=3, stream=s)
        obs = json.dumps(m)
    except asyncio.TimeoutError:
        obs = "no Reset"
        m = {}
    record("agent sends window+1 bytes", "Reset flow_control", obs, m.get("code") == "flow_control")
    wr.transport.abort()

    # 4: Window overflow
    rd, wr = await public_connect(address)
    o = await get_open(r)
    s = o["stream"]
    await r.send(control({"type": "Opened", "stream": s}))
    await r.send(control({"type": "Window", "stream": s, "credit": 2**31 - 1}))
    try:
        m = await r.expect(("Reset",), timeout=3, stream=s)
        obs = json.dumps(m)
    except asyncio.TimeoutError:
        obs, m = "no Reset", {}
    record("Window raising credit above 2^31-1", "Reset flow_control", obs, m.get("code") == "flow_control")
    wr.transport.abort()

    # 5: protocol mismatch, second Fin, data after Fin
    for what in ("mismatch", "fin2", "data-after-fin"):
        rd, wr = await public_connect(address)
        o = await get_open(r)
        s = o["stream"]
        await r.send(control({"type": "Opened", "stream": s}))
        if what == "mismatch":
            await r.send(data_frame(4, s, b"x"))
            want = "protocol_mismatch"
        elif what == "fin2":
            await r.send(control({"type": "Fin", "stream": s}), control({"type": "Fin", "stream": s}))
            want = "protocol_error"
        else:
            await r.send(control({"type": "Fin", "stream": s}), data_frame(3, s, b"x"))
            want = "stream_closed"
        try:
            m = await r.expect(("Reset",), timeout=3, stream=s)
            obs = json.dumps(m)
        except asyncio.TimeoutError:
            obs, m = "no Reset", {}
        record("agent " + what, "Reset " + want, obs, m.get("code") == want)
        wr.transport.abort()

    # 6: Refused -> public client closed; how?
    rd, wr = await public_connect(address)
    o = await get_open(r)
    await r.send(control({"type": "Refused", "stream": o["stream"], "code": "connect_failed"}))
    try:
        got = await asyncio.wait_for(rd.read(100), 3)
        obs = "read %r (FIN)" % got
    except ConnectionResetError:
        obs = "RST"
    except asyncio.TimeoutError:
        obs = "still open"
    record("Refused", "public connection closed", obs, obs != "still open")
    wr.transport.abort()

    # 7: open timeout: no answer -> Reset{timeout}
    rd, wr = await public_connect(address)
    o = await get_open(r)
    t0 = time.monotonic()
    m = await r.expect(("Reset",), timeout=6, stream=o["stream"])
    record("Open unanswered", "Reset timeout after open_timeout_ms (1500)",
           "%s after %.1fs" % (json.dumps(m), time.monotonic() - t0), m.get("code") == "timeout")
    wr.transport.abort()

    # 8: late frames for closed stream are ignored; frames for never-opened id close
    late = o["stream"]
    await r.send(data_frame(3, late, b"late"), control({"type": "Window", "stream": late, "credit": 5}),
                 control({"type": "Fin", "stream": late}), control({"type": "Reset", "stream": late, "code": "reset"}),
                 control({"type": "Opened", "stream": late}))
    await r.send(control({"type": "Register", "id": 50, "tunnel": "ping", "protocol_id": 3}))
    try:
        m = await r.expect(("Registered", "RegisterError", "Reset"), timeout=3)
        obs = json.dumps(m)
        ok = m["type"] in ("Registered", "RegisterError")
    except PeerClosed as e:
        obs, ok = "closed %s %s" % (e.code, e.reason), False
    record("late frames for a closed stream", "ignored", obs, ok)

    # 9: credit cadence and Fin exchange with a cooperating agent side
    rd, wr = await public_connect(address)
    o = await get_open(r)
    s = o["stream"]
    await r.send(control({"type": "Opened", "stream": s}))
    total = 64 * 1024
    sent = 0
    credit = gw_window
    windows = []
    received = b""

    async def read_all():
        nonlocal received
        while True:
            d = await rd.read(65536)
            if not d:
                return
            received += d
    reader_task = asyncio.ensure_future(read_all())
    while sent < total:
        while credit == 0:
            pid, m = await r.next(5)
            if pid == 0 and m["type"] == "Window" and m["stream"] == s:
                windows.append(m["credit"])
                credit += m["credit"]
            elif pid == 0 and m["type"] == "Heartbeat":
                await r.send(control({"type": "HeartbeatAck", "seq": m.get("seq", 0)}))
        n = min(credit, 4096, total - sent)
        await r.send(data_frame(3, s, bytes([sent % 251]) * n))
        sent += n
        credit -= n
    await r.send(control({"type": "Fin", "stream": s}))
    await asyncio.wait_for(reader_task, 5)
    record("gateway Window cadence", "a Window each quarter of the window (%d)" % (gw_window // 4),
           "credits=%s" % windows[:12], all(w == gw_window // 4 for w in windows))
    record("agent Fin -> public EOF", "all %d bytes then EOF" % total, "%d bytes then EOF" % len(received),
           len(received) == total)

    # 10: gateway -> agent: public sends more than the agent's window; gateway must respect it
    big = b"z" * (3 * 16384 + 100)
    wr.write(big)
    wr.write_eof()
    await wr.drain()
    got = 0
    fin = False
    deadline = time.monotonic() + 5
    max_unacked = 0
    unacked = 0
    while time.monotonic() < deadline and not fin:
        try:
            pid, m = await r.next(1)
        except asyncio.TimeoutError:
            if unacked:
                await r.send(control({"type": "Window", "stream": s, "credit": unacked}))
                unacked = 0
            continue
        if pid == 3 and int.from_bytes(m[:4], "big") == s:
            got += len(m) - 4
            unacked += len(m) - 4
            max_unacked = max(max_unacked, unacked)
            if unacked >= 4096:
                await r.send(control({"type": "Window", "stream": s, "credit": unacked}))
                unacked = 0
        elif pid == 0 and m["type"] == "Fin" and m["stream"] == s:
            fin = True
        elif pid == 0 and m["type"] == "Heartbeat":
            await r.send(control({"type": "HeartbeatAck", "seq": m.get("seq", 0)}))
    record("gateway respects agent window", "never more than 16384 unreturned; all bytes then Fin",
           "max unreturned %d, got %d of %d, fin=%s" % (max_unacked, got, len(big), fin),
           max_unacked <= 16384 and got == len(big) and fin)
    wr.transport.abort()

    # 11: agent Reset -> public RST
    rd, wr = await public_connect(address)
    o = await get_open(r)
    await r.send(control({"type": "Opened", "stream": o["stream"]}))
    await r.send(control({"type": "Reset", "stream": o["stream"], "code": "reset"}))
    try:
        got = await asyncio.wait_for(rd.read(100), 3)
        obs = "read %r (FIN)" % got
    except ConnectionResetError:
        obs = "RST"
    except asyncio.TimeoutError:
        obs = "still open"
    record("agent Reset", "public side aborted with RST", obs, obs == "RST")
    wr.transport.abort()

    # 12: public RST -> Reset from gateway, code?
    rd, wr = await public_connect(address)
    o = await get_open(r)
    await r.send(control({"type": "Opened", "stream": o["stream"]}))
    sock = wr.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    wr.transport.abort()
    try:
        m = await r.expect(("Reset", "Fin"), timeout=3)
        obs = json.dumps(m)
    except asyncio.TimeoutError:
        obs, m = "nothing", {}
    record("public client RST", "Reset reset", obs, m.get("code") == "reset")

    # 13: empty data frame is no-op; Open ids increase by 2?
    rd, wr = await public_connect(address)
    o2 = await get_open(r)
    rd3, wr3 = await public_connect(address)
    o3 = await get_open(r)
    record("stream ids", "odd, strictly increasing", "%d then %d" % (o2["stream"], o3["stream"]),
           o2["stream"] % 2 == 1 and o3["stream"] > o2["stream"])
    await r.send(control({"type": "Opened", "stream": o2["stream"]}), data_frame(3, o2["stream"], b""))
    await r.send(control({"type": "Register", "id": 51, "tunnel": "ping2", "protocol_id": 3}))
    m = await r.expect(("Registered", "RegisterError", "Reset"))
    record("empty data frame", "no effect", json.dumps(m), m["type"] != "Reset")
    wr.transport.abort()
    wr3.transport.abort()
    r.close()


async def p_replace_and_goodbye(env):
    a = await Raw(env).connect()
    await a.auth(name="rep")
    ra = await a.register("r", 1)
    b = await Raw(env).connect()
    mb = await b.auth(name="rep")
    code, reason, seen = await a.until_close(timeout=4)
    record("replacement", "old session closed 4003", "%s %r %s" % (code, reason, [x["type"] for x in seen]),
           code == 4003)
    errs = [x.get("code") for x in seen if x["type"] == "Error"]
    record("replacement Error.code", "the close code's name: 'replaced' (section 7)", repr(errs),
           errs == ["replaced"])
    rb = await b.register("r", 1, remote_port=int(ra["address"].rsplit(":", 1)[1]))
    record("replacement keeps port", "new session can register the old port", json.dumps(rb),
           rb["type"] == "Registered")
    # agent Goodbye
    await b.send(control({"type": "Goodbye", "reason": "bye"}))
    await asyncio.sleep(0.3)
    try:
        rd, wr = await public_connect(rb["address"])
        try:
            got = await asyncio.wait_for(rd.read(1), 2)
            obs = "connect ok, read %r" % got
        except asyncio.TimeoutError:
            obs = "connect ok, stays open"
        except ConnectionResetError:
            obs = "connect ok, RST"
        wr.transport.abort()
    except OSError as e:
        obs = "connect failed: %s" % e
    # any Open?
    try:
        m = await b.expect(("Open",), timeout=1)
        obs += "; got Open"
    except (asyncio.TimeoutError, PeerClosed):
        obs += "; no Open"
    record("agent Goodbye", "public connections no longer accepted", obs, "no Open" in obs)
    b.ws.send_close_nowait(1000, "bye")
    code, reason, seen = await b.until_close(timeout=3)
    record("agent close 1000", "gateway answers Close", "%s %r" % (code, reason), code == 1000)
    b.close()


async def p_drain(env):
    r = await Raw(env).connect()
    await r.auth(name="drain")
    reg = await r.register("d", 1)
    rd, wr = await public_connect(reg["address"])
    o = await get_open(r)
    await r.send(control({"type": "Opened", "stream": o["stream"]}))
    env.proc.send_signal(signal.SIGTERM)
    m = await r.expect(("Goodbye",), timeout=5)
    record("SIGTERM drain", "Goodbye{reason, drain_ms}", json.dumps(m), "drain_ms" in m)
    # stream still works
    await r.send(data_frame(3, o["stream"], b"still"))
    got = await asyncio.wait_for(rd.read(5), 3)
    record("stream during drain", "goes on", repr(got), got == b"still")
    try:
        rd2, wr2 = await public_connect(reg["address"])
        try:
            x = await asyncio.wait_for(rd2.read(1), 1)
            obs = "connect ok, read %r" % x
        except asyncio.TimeoutError:
            obs = "connect ok, open"
        wr2.transport.abort()
    except OSError as e:
        obs = "connect failed: %s" % e
    record("public connect during drain", "not accepted", obs, "failed" in obs)
    await r.send(control({"type": "Fin", "stream": o["stream"]}))
    wr.write_eof()
    t0 = time.monotonic()
    code, reason, seen = await r.until_close(timeout=8)
    record("drain end", "close 1001 when the last stream ends",
           "%s %r after %.1fs, msgs %s" % (code, reason, time.monotonic() - t0, [x["type"] for x in seen]),
           code == 1001)
    r.close()


PROBES = [p_http_statuses, p_preauth, p_authok_and_heartbeat, p_after_auth_errors, p_register,
          p_streams, p_replace_and_goodbye, p_drain]


class Env:
    pass


async def amain(args):
    env = Env()
    tmp = tempfile.mkdtemp(prefix="muxgate-probe-")
    env.port = free_port()
    env.cert = os.path.join(tmp, "cert.pem")
    cfg = os.path.join(tmp, "gateway.toml")
    th = "sha256:" + hashlib.sha256(TOKEN.encode()).hexdigest()
    with open(cfg, "w") as f:
        f.write("""[gateway]
listen = "127.0.0.1:%d"
public_bind = "127.0.0.1"
log_level = "debug"
[tls]
cert = "%s"
key = "%s"
self_signed = true
[auth]
shared_token_hash = "%s"
failure_burst = 100
[limits]
stream_window = "16 KiB"
max_frame_payload = "32 KiB"
write_quantum = "8 KiB"
max_message = "64 KiB"
max_control_message = "4 KiB"
max_tunnels_per_agent = 3
auth_timeout_ms = 1500
open_timeout_ms = 1500
heartbeat_interval_ms = 300
heartbeat_timeout_ms = 1500
drain_timeout_ms = 4000
""" % (env.port, env.cert, os.path.join(tmp, "key.pem"), th))
    log = open(os.path.join(tmp, "gateway.log"), "w")
    env.proc = subprocess.Popen([os.path.join(args.build_dir, "bin", "muxgate"), "--config", cfg],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", env.port), 0.2).close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        for p in PROBES:
            if args.only and p.__name__ not in args.only:
                continue
            print("──", p.__name__, flush=True)
            try:
                await asyncio.wait_for(p(env), 60)
            except Exception as e:
                import traceback
                traceback.print_exc()
                record(p.__name__, "probe runs", "probe crashed: %r" % e, False)
    finally:
        if env.proc.poll() is None:
            env.proc.send_signal(signal.SIGKILL)
        env.proc.wait()
        print("gateway log:", log.name)
    diffs = [x for x in RESULTS if not x[3]]
    print("\n%d probes, %d differ from the spec's statement" % (len(RESULTS), len(diffs)))
    for name, exp, obs, _ in diffs:
        print("  DIFF %s: expected %s; observed %s" % (name, exp, obs))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build-dir", default=os.environ.get("MUXGATE_BUILD_DIR", "build-interop"))
    p.add_argument("--only", action="append")
    args = p.parse_args()
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
