#!/usr/bin/python3
"""pyagent: a muxgate agent written from docs/protocol.md alone.

Python 3 standard library only (asyncio + ssl). It contains its own RFC 6455
WebSocket client so that the interop test depends on nothing but the protocol
specification and the RFC.

    MUXGATE_TOKEN=secret pyagent.py --gateway wss://127.0.0.1:8443 --ca cert.pem \
        --token-env MUXGATE_TOKEN --name lab --tunnel tcp:0:127.0.0.1:8080

Machine-readable events are printed on stdout, one per line, as
`EVENT key=value ...` (the interop test reads them); diagnostics go to stderr.
"""

import argparse
import asyncio
import base64
import collections
import hashlib
import json
import os
import random
import signal
import socket
import ssl
import struct
import sys
import time
import urllib.parse

SUBPROTOCOL = "muxgate.v1"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
VERSION = "pyagent-1"

# Section 3: protocol ids of the plugins we know by name.
PROTOCOL_IDS = {"ssh": 1, "rdp": 2, "tcp": 3, "http": 4}

# Section 7: close codes and their names (used as Error.code).
CLOSE_NAMES = {
    1000: "normal", 1001: "going away", 1002: "protocol error",
    1003: "unsupported data", 1008: "policy violation", 1009: "message too big",
    1011: "internal error", 4001: "auth timeout", 4002: "auth failed",
    4003: "replaced", 4004: "heartbeat timeout", 4005: "version",
    4006: "rate limited", 4007: "limit",
}

MAX_CREDIT = 2**31 - 1
U32 = 2**32 - 1
U64 = 2**64 - 1

_verbose = False


def log(*a):
    if _verbose:
        print(time.strftime("%H:%M:%S"), "pyagent:", *a, file=sys.stderr, flush=True)


def warn(*a):
    print(time.strftime("%H:%M:%S"), "pyagent:", *a, file=sys.stderr, flush=True)


def event(kind, **kv):
    parts = ["EVENT", kind] + ["%s=%s" % (k, str(v).replace(" ", "_")) for k, v in kv.items()]
    print(" ".join(parts), flush=True)


# ───────────────────────── WebSocket (RFC 6455) ─────────────────────────

class ConnError(Exception):
    """A connection error: close the WebSocket with `code` (section 7)."""

    def __init__(self, code, reason):
        super().__init__("%d %s" % (code, reason))
        self.code = code
        self.reason = reason


class PeerClosed(Exception):
    def __init__(self, code, reason):
        super().__init__("%s %s" % (code, reason))
        self.code = code
        self.reason = reason


def ws_mask(data, key):
    """XOR `data` with the 4-byte `key` repeated (RFC 6455 5.3), fast for MiBs."""
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


class WebSocket:
    """Client side of one WebSocket connection over asyncio streams."""

    def __init__(self, reader, writer, max_message):
        self.r = reader
        self.w = writer
        self.max_message = max_message
        self.close_sent = False
        self.close_received = False

    @classmethod
    async def connect(cls, host, port, path, ssl_ctx, max_message, timeout,
                      extra_headers=(), protocols=(SUBPROTOCOL,)):
        server_hostname = None
        if ssl_ctx is not None:
            server_hostname = host  # Python omits SNI for IP literals itself
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ssl_ctx, server_hostname=server_hostname,
                                    limit=1 << 16),
            timeout)
        try:
            key = base64.b64encode(os.urandom(16)).decode()
            hosthdr = host
            if ":" in host:
                hosthdr = "[%s]" % host
            default_port = 443 if ssl_ctx is not None else 80
            if port != default_port:
                hosthdr += ":%d" % port
            lines = ["GET %s HTTP/1.1" % path, "Host: %s" % hosthdr, "Upgrade: websocket",
                     "Connection: Upgrade", "Sec-WebSocket-Key: %s" % key,
                     "Sec-WebSocket-Version: 13"]
            if protocols:
                lines.append("Sec-WebSocket-Protocol: %s" % ", ".join(protocols))
            lines += list(extra_headers)
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            status, headers = parse_http_head(head)
            if status != 101:
                body = b""
                try:
                    body = await asyncio.wait_for(reader.read(4096), 2)
                except Exception:
                    pass
                raise HandshakeError(status, headers, body)
            if headers.get("upgrade", "").lower() != "websocket":
                raise HandshakeError(status, headers, b"", "Upgrade is not websocket")
            if "upgrade" not in [t.strip().lower() for t in headers.get("connection", "").split(",")]:
                raise HandshakeError(status, headers, b"", "Connection does not name upgrade")
            if headers.get("sec-websocket-accept") != ws_accept(key):
                raise HandshakeError(status, headers, b"", "bad Sec-WebSocket-Accept")
            if headers.get("sec-websocket-extensions"):
                raise HandshakeError(status, headers, b"", "unrequested extension")
            if protocols and headers.get("sec-websocket-protocol") != SUBPROTOCOL:
                raise HandshakeError(status, headers, b"", "subprotocol is not " + SUBPROTOCOL)
        except BaseException:
            writer.transport.abort()
            raise
        return cls(reader, writer, max_message)

    # -- writing
    def _frame(self, opcode, payload, fin=True):
        n = len(payload)
        b0 = (0x80 if fin else 0) | opcode
        if n < 126:
            head = struct.pack("!BB", b0, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", b0, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", b0, 0x80 | 127, n)
        key = os.urandom(4)
        return head + key + ws_mask(payload, key)

    async def send_binary(self, payload, fragment=0):
        """Send one binary message; `fragment` > 0 splits it into continuation frames."""
        if self.close_sent:
            return
        if fragment and len(payload) > fragment:
            parts = [payload[i:i + fragment] for i in range(0, len(payload), fragment)]
            out = [self._frame(0x2 if i == 0 else 0x0, p, fin=(i == len(parts) - 1))
                   for i, p in enumerate(parts)]
            self.w.write(b"".join(out))
        else:
            self.w.write(self._frame(0x2, payload))
        await self.w.drain()

    def send_text_nowait(self, text):
        self.w.write(self._frame(0x1, text.encode()))

    def send_close_nowait(self, code, reason=""):
        if self.close_sent:
            return
        self.close_sent = True
        r = reason.encode()[:120]
        payload = struct.pack("!H", code) + r if code else b""
        try:
            self.w.write(self._frame(0x8, payload))
        except Exception:
            pass

    # -- reading
    async def _read_frame_head(self):
        h = await self.r.readexactly(2)
        b0, b1 = h[0], h[1]
        fin, rsv, opcode = bool(b0 & 0x80), b0 & 0x70, b0 & 0x0F
        masked, n = bool(b1 & 0x80), b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await self.r.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await self.r.readexactly(8))[0]
            if n >> 63:
                raise ConnError(1002, "bad websocket length")
        if rsv:
            raise ConnError(1002, "RSV bits set (no extension negotiated)")
        if masked:
            raise ConnError(1002, "masked frame from server")
        return fin, opcode, n

    async def _skip(self, n):
        while n:
            chunk = await self.r.readexactly(min(n, 1 << 16))
            n -= len(chunk)

    async def recv(self):
        """Next binary message (bytes). Answers pings. Raises PeerClosed / ConnError."""
        parts = []
        size = 0
        msg_opcode = None
        while True:
            fin, opcode, n = await self._read_frame_head()
            if opcode >= 0x8:
                if not fin or n > 125:
                    raise ConnError(1002, "bad control frame")
                payload = await self.r.readexactly(n)
                if opcode == 0x8:
                    self.close_received = True
                    code, reason = 1005, ""
                    if len(payload) == 1:
                        raise ConnError(1002, "bad close payload")
                    if len(payload) >= 2:
                        code = struct.unpack("!H", payload[:2])[0]
                        reason = payload[2:].decode("utf-8", "replace")
                    if not self.close_sent:
                        # echo the code back (RFC 6455 5.5.1)
                        self.send_close_nowait(code if code != 1005 else 1000, "")
                        try:
                            await self.w.drain()
                        except Exception:
                            pass
                    raise PeerClosed(code, reason)
                if opcode == 0x9:  # ping
                    if not self.close_sent:
                        self.w.write(self._frame(0xA, payload))
                    continue
                if opcode == 0xA:  # pong
                    continue
                raise ConnError(1002, "unknown control opcode %d" % opcode)
            if opcode == 0x0:
                if msg_opcode is None:
                    raise ConnError(1002, "continuation without a message")
            elif opcode in (0x1, 0x2):
                if msg_opcode is not None:
                    raise ConnError(1002, "new message inside a fragmented one")
                msg_opcode = opcode
            else:
                raise ConnError(1002, "unknown opcode %d" % opcode)
            if msg_opcode == 0x1:
                await self._skip(n)
                if fin:
                    raise ConnError(1003, "text message")
                continue
            if size + n > self.max_message:
                # read the rest (bounded) to report what the peer sent, then fail
                over = size + n
                if n:
                    parts.append(await self.r.readexactly(n) if over <= 64 << 20 else b"")
                while not fin and over <= 64 << 20:
                    fin, opcode, n = await self._read_frame_head()
                    if opcode >= 0x8:
                        await self._skip(n)
                        continue
                    over += n
                    parts.append(await self.r.readexactly(n))
                raise ConnError(1009, "message of %d bytes over max_message %d: %s" % (
                    over, self.max_message, describe_frames(b"".join(parts))))
            if n:
                parts.append(await self.r.readexactly(n))
            size += n
            if fin:
                return parts[0] if len(parts) == 1 else b"".join(parts)

    async def drain_until_close(self, timeout):
        """After sending Close: read (and drop) until the peer's Close, EOF or timeout."""
        async def run():
            while not self.close_received:
                try:
                    await self.recv()
                except (PeerClosed, asyncio.IncompleteReadError, ConnectionError):
                    return
                except ConnError:
                    return
        try:
            await asyncio.wait_for(run(), timeout)
        except (asyncio.TimeoutError, Exception):
            pass

    async def wait_eof(self, timeout):
        """RFC 6455 7.1.1: the server closes TCP first; wait for it a while."""
        async def run():
            while await self.r.read(65536):
                pass
        try:
            await asyncio.wait_for(run(), timeout)
        except (asyncio.TimeoutError, Exception):
            pass

    def abort(self):
        try:
            self.w.transport.abort()
        except Exception:
            pass


def describe_frames(msg):
    """Short summary of the muxgate frames in a message, for diagnostics."""
    out, off = [], 0
    while off + 5 <= len(msg) and len(out) < 40:
        pid = msg[off]
        n = int.from_bytes(msg[off + 1:off + 5], "big")
        body = msg[off + 5:off + 5 + n]
        if pid == 0:
            out.append(body[:60].decode("utf-8", "replace"))
        else:
            out.append("data(pid=%d,stream=%d,%d)" % (pid, int.from_bytes(body[:4], "big"), n - 4))
        off += 5 + n
    return "%d bytes, frames: %s" % (len(msg), " ".join(out))


class HandshakeError(Exception):
    def __init__(self, status, headers, body, why=""):
        super().__init__("HTTP %s %s %r" % (status, why, body[:200]))
        self.status = status
        self.headers = headers
        self.body = body


def parse_http_head(head):
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise HandshakeError(0, {}, head, "not an HTTP response")
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        k, _, v = line.partition(":")
        k = k.strip().lower()
        v = v.strip()
        headers[k] = headers[k] + ", " + v if k in headers else v
    return status, headers


# ───────────────────────── muxgate frames (section 2) ─────────────────────────

def frame(protocol_id, payload):
    return struct.pack("!BI", protocol_id, len(payload)) + payload


def control(obj):
    return frame(0, json.dumps(obj, separators=(",", ":")).encode())


def data_frame(protocol_id, stream_id, data):
    return struct.pack("!BII", protocol_id, 4 + len(data), stream_id) + data


def parse_message(msg, max_frame, max_control):
    """Split a binary message into frames: [(protocol_id, payload memoryview)]."""
    if not msg:
        raise ConnError(1002, "empty message")
    mv = memoryview(msg)
    off, end = 0, len(msg)
    out = []
    while off < end:
        if end - off < 5:
            raise ConnError(1002, "message ends inside a frame header")
        pid = mv[off]
        n = int.from_bytes(mv[off + 1:off + 5], "big")
        off += 5
        if n > max_frame:
            raise ConnError(1009, "frame payload over max_frame")
        if pid == 0 and n > max_control:
            raise ConnError(1009, "control payload over the control limit")
        if off + n > end:
            raise ConnError(1002, "payload runs past the end of the message")
        payload = mv[off:off + n]
        off += n
        if pid != 0:
            if n < 4:
                raise ConnError(1002, "data frame shorter than 4 bytes")
            if int.from_bytes(payload[:4], "big") == 0:
                raise ConnError(1002, "data frame for stream 0")
        out.append((pid, payload))
    return out


# Section 3: field checks for the messages the agent receives.
def _is_u32(v, lo=0, hi=U32):
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _is_str(v, maxlen=4096):
    return isinstance(v, str) and len(v.encode()) <= maxlen


REQ = {  # type -> {field: (checker, required)}
    "AuthOk": {"session": (_is_str, True), "version": (_is_str, False),
               "heartbeat_ms": (lambda v: _is_u32(v, 1), True),
               "window": (lambda v: _is_u32(v, 1), True),
               "max_frame": (lambda v: _is_u32(v, 1), True),
               "max_message": (lambda v: _is_u32(v, 1), True),
               "max_streams": (lambda v: _is_u32(v, 1), True),
               "max_tunnels": (_is_u32, True)},
    "AuthError": {"code": (_is_str, True), "message": (_is_str, False),
                  "retry_ms": (_is_u32, False)},
    "Heartbeat": {"seq": (lambda v: _is_u32(v, 0, U64), False)},
    "Registered": {"id": (_is_u32, True), "tunnel": (lambda v: _is_str(v, 256), True),
                   "address": (_is_str, False)},
    "RegisterError": {"id": (_is_u32, True), "tunnel": (lambda v: _is_str(v, 256), True),
                      "code": (_is_str, True), "message": (_is_str, False)},
    "Goodbye": {"reason": (_is_str, False), "drain_ms": (_is_u32, False)},
    "Error": {"code": (_is_str, True), "message": (_is_str, False)},
    "Open": {"stream": (lambda v: _is_u32(v, 1), True), "tunnel": (lambda v: _is_str(v, 256), True),
             "protocol_id": (lambda v: _is_u32(v, 1, 255), True), "peer": (_is_str, False),
             "meta": (lambda v: isinstance(v, dict), False)},
    "Fin": {"stream": (_is_u32, True)},
    "Reset": {"stream": (_is_u32, True), "code": (_is_str, True), "message": (_is_str, False)},
    "Window": {"stream": (_is_u32, True), "credit": (lambda v: _is_u32(v, 1), True)},
    "Blocked": {"stream": (_is_u32, True)},
}
NEVER_RECEIVED = {"HeartbeatAck", "Register", "Unregister", "Opened", "Refused"}
AUTH_PHASE = {"Auth", "AuthOk", "AuthError"}


def validate(msg):
    t = msg["type"]
    for field, (check, required) in REQ[t].items():
        if field not in msg:
            if required:
                raise ConnError(1002, "%s without %s" % (t, field))
            continue
        if not check(msg[field]):
            raise ConnError(1002, "%s.%s has a bad value" % (t, field))


# ───────────────────────── SPKI pin (section 1) ─────────────────────────

def _der_read(buf, off):
    tag = buf[off]
    n = buf[off + 1]
    off += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(buf[off:off + k], "big")
        off += k
    return tag, off, off + n  # tag, content start, content end


def spki_pin(der_cert):
    """sha256// + Base64(SHA-256(DER SubjectPublicKeyInfo)) of a DER certificate."""
    _, c, _ = _der_read(der_cert, 0)            # Certificate SEQUENCE
    _, t, _ = _der_read(der_cert, c)            # tbsCertificate SEQUENCE
    off = t
    tag, s, e = _der_read(der_cert, off)
    if tag == 0xA0:                             # [0] version
        off = e
    for _ in range(5):                          # serial, signature, issuer, validity, subject
        _, s, e = _der_read(der_cert, off)
        off = e
    _, s, e = _der_read(der_cert, off)          # subjectPublicKeyInfo
    return "sha256//" + base64.b64encode(hashlib.sha256(der_cert[off:e]).digest()).decode()


# ───────────────────────── streams (section 5) ─────────────────────────

FIN = object()


class Stream:
    def __init__(self, session, sid, pid, tunnel):
        self.s = session
        self.id = sid
        self.pid = pid
        self.tunnel = tunnel
        self.state = "opening"
        self.send_credit = session.gw_window       # what we may send to the gateway
        self.recv_left = session.args.window       # what the gateway may still send us
        self.credit_event = asyncio.Event()
        self.local_q = collections.deque()         # bytes / FIN to write to the local socket
        self.local_event = asyncio.Event()
        self.unreturned = 0                        # delivered but not yet returned as credit
        self.fin_sent = False
        self.fin_recv = False
        self.local_eof_done = False
        self.reader = None
        self.writer = None
        self.tasks = []
        self.bytes_in = 0
        self.bytes_out = 0

    # gateway → agent
    def on_data(self, data):
        if self.state == "closed":
            return
        if self.fin_recv:
            self.s.reset(self, "stream_closed", "data after Fin")
            return
        if not data:
            return  # an empty data frame has no effect
        if len(data) > self.recv_left:
            self.s.reset(self, "flow_control", "data beyond the announced window")
            return
        self.recv_left -= len(data)
        self.bytes_in += len(data)
        self.local_q.append(bytes(data))
        self.local_event.set()

    def on_fin(self):
        if self.fin_recv:
            self.s.reset(self, "protocol_error", "second Fin")
            return
        self.fin_recv = True
        self.local_q.append(FIN)
        self.local_event.set()

    def on_window(self, credit):
        if self.send_credit + credit > MAX_CREDIT:
            self.s.reset(self, "flow_control", "credit above 2^31-1")
            return
        self.send_credit += credit
        self.credit_event.set()

    async def run(self, host, port):
        try:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), self.s.args.connect_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if self.state != "closed":
                code = "timeout" if isinstance(e, asyncio.TimeoutError) else "connect_failed"
                self.s.refuse(self, code, "%s:%s: %s" % (host, port, e or type(e).__name__))
            return
        if self.state == "closed":
            self._abort_local()
            return
        # drain() then waits until the kernel took every byte: "delivered"
        self.writer.transport.set_write_buffer_limits(high=0)
        self.state = "open"
        self.s.send_ordered(control({"type": "Opened", "stream": self.id}))
        self.tasks.append(asyncio.ensure_future(self._to_local()))
        self.tasks.append(asyncio.ensure_future(self._from_local()))

    async def _to_local(self):
        """Write what the gateway sent to the local socket, returning credit."""
        quarter = self.s.args.credit_every or max(1, self.s.args.window // 4)
        try:
            while True:
                while not self.local_q:
                    self.local_event.clear()
                    await self.local_event.wait()
                item = self.local_q.popleft()
                if item is FIN:
                    if self.writer.can_write_eof():
                        self.writer.write_eof()
                    self.local_eof_done = True
                    self.s.maybe_finished(self)
                    return
                self.writer.write(item)
                await self.writer.drain()
                self.unreturned += len(item)
                if self.unreturned >= quarter and self.state != "closed":
                    credit, self.unreturned = self.unreturned, 0
                    self.recv_left += credit
                    self.s.stats["windows_out"] += 1
                    self.s.send_prio(control({"type": "Window", "stream": self.id, "credit": credit}))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.s.reset(self, "reset", "local write: %s" % (e or type(e).__name__))

    async def _from_local(self):
        """Read the local socket within the gateway's credit and send data frames."""
        try:
            while True:
                if self.send_credit <= 0:
                    self.s.stats["credit_waits"] += 1
                while self.send_credit <= 0:
                    self.credit_event.clear()
                    await self.credit_event.wait()
                n = min(self.send_credit, self.s.chunk)
                data = await self.reader.read(n)
                if self.state == "closed":
                    return
                if not data:
                    self.fin_sent = True
                    self.s.send_ordered(control({"type": "Fin", "stream": self.id}))
                    self.s.maybe_finished(self)
                    return
                self.send_credit -= len(data)
                self.bytes_out += len(data)
                self.s.stats["data_frames_out"] += 1
                self.s.send_ordered(data_frame(self.pid, self.id, data))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.s.reset(self, "reset", "local read: %s" % (e or type(e).__name__))

    def _abort_local(self):
        if self.writer is not None:
            try:
                sock = self.writer.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except Exception:
                pass
            self.writer.transport.abort()

    def close(self, abort):
        self.state = "closed"
        for t in self.tasks:
            if t is not asyncio.current_task():
                t.cancel()
        self.local_q.clear()
        if abort:
            self._abort_local()
        elif self.writer is not None:
            self.writer.close()


# ───────────────────────── session ─────────────────────────

class Session:
    def __init__(self, args, ws, tunnels):
        self.args = args
        self.ws = ws
        self.tunnels = tunnels            # name -> dict(protocol_id, remote_port, host, port)
        self.streams = {}
        self.highest = 0
        self.authed = False
        self.prio = collections.deque()   # control messages that need no ordering with data
        self.ordered = collections.deque()  # Opened / data / Fin, in stream order
        self.out_event = asyncio.Event()
        self.closing = False
        self.close_code = None
        self.close_reason = ""
        self.last_recv = time.monotonic()
        self.heartbeats = 0
        self.gw_window = 0
        self.gw_max_frame = 0
        self.gw_max_message = 0
        self.chunk = 0
        self.write_message = 256 * 1024
        self.register_ids = {}
        self.next_register_id = 0
        self.ended = asyncio.get_running_loop().create_future()
        self.stats = collections.Counter()
        self.closed_by_peer = False
        self.auth_error = None

    # -- sending
    def send_prio(self, b):
        if not self.closing:
            self.prio.append(b)
            self.out_event.set()

    def send_ordered(self, b):
        if not self.closing:
            self.ordered.append(b)
            self.out_event.set()

    async def writer_loop(self):
        try:
            while True:
                while not self.prio and not self.ordered:
                    self.out_event.clear()
                    await self.out_event.wait()
                limit = min(self.write_message, self.gw_max_message or 16384)
                parts, size = [], 0
                for q in (self.prio, self.ordered):
                    while q and (not parts or size + len(q[0]) <= limit):
                        b = q.popleft()
                        parts.append(b)
                        size += len(b)
                msg = parts[0] if len(parts) == 1 else b"".join(parts)
                await self.ws.send_binary(msg, fragment=self.args.ws_fragment)
                self.stats["messages_out"] += 1
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log("writer stopped:", e)
            self.finish(None, "write failed: %s" % e)

    async def flush(self, timeout=5):
        async def run():
            while self.prio or self.ordered:
                await asyncio.sleep(0.005)
        try:
            await asyncio.wait_for(run(), timeout)
        except asyncio.TimeoutError:
            pass

    # -- stream helpers
    def reset(self, st, code, message=""):
        if st.state == "closed":
            return
        log("stream %d: Reset %s %s" % (st.id, code, message))
        event("STREAM_RESET_SENT", stream=st.id, code=code)
        self.send_prio(control({"type": "Reset", "stream": st.id, "code": code, "message": message[:200]}))
        st.close(abort=True)
        self.streams.pop(st.id, None)

    def refuse(self, st, code, message=""):
        log("stream %d: Refused %s %s" % (st.id, code, message))
        event("STREAM_REFUSED", stream=st.id, code=code)
        self.send_prio(control({"type": "Refused", "stream": st.id, "code": code, "message": message[:200]}))
        st.close(abort=True)
        self.streams.pop(st.id, None)

    def maybe_finished(self, st):
        if st.fin_sent and st.fin_recv and st.local_eof_done and st.state != "closed":
            log("stream %d: closed (both Fins), in=%d out=%d" % (st.id, st.bytes_in, st.bytes_out))
            self.stats["streams_closed"] += 1
            st.close(abort=False)
            self.streams.pop(st.id, None)

    # -- connection-level
    def finish(self, code, reason):
        """Start closing the connection (code None: transport failed, no handshake)."""
        if self.closing:
            return
        self.closing = True
        self.close_code = code
        self.close_reason = reason
        if not self.ended.done():
            self.ended.set_result((code, reason))

    async def conn_error(self, code, reason):
        warn("connection error %d: %s" % (code, reason))
        event("CONN_ERROR", code=code)
        if not self.closing and not self.ws.close_sent:
            try:
                self.ws.w.write(self.ws._frame(0x2, control(
                    {"type": "Error", "code": CLOSE_NAMES.get(code, str(code)), "message": reason[:200]})))
            except Exception:
                pass
            self.ws.send_close_nowait(code, reason)
        self.finish(code, reason)

    def check_stream_id(self, sid, kind="data"):
        """Returns the Stream, or None for a closed stream; raises for never-opened ids."""
        st = self.streams.get(sid)
        if st is not None:
            return st
        if sid % 2 == 0 or sid > self.highest:
            raise ConnError(1002, "frame for stream %d that was never opened" % sid)
        self.stats["late_frames"] += 1
        self.stats["late_" + kind] += 1
        return None

    def handle(self, msg):
        for pid, payload in parse_message(msg, self.args.max_frame, self.args.max_control):
            if pid != 0:
                sid = int.from_bytes(payload[:4], "big")
                if not self.authed:
                    raise ConnError(1002, "data before AuthOk")
                st = self.check_stream_id(sid)
                if st is None:
                    continue
                if pid != st.pid:
                    self.reset(st, "protocol_mismatch",
                               "data frame protocol_id %d on a stream opened with %d" % (pid, st.pid))
                    continue
                self.stats["data_frames_in"] += 1
                self.stats["max_frame_in"] = max(self.stats["max_frame_in"], len(payload))
                st.on_data(payload[4:])
                continue
            try:
                obj = json.loads(bytes(payload).decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise ConnError(1002, "control payload is not JSON")
            if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
                raise ConnError(1002, "control payload without a string type")
            self.on_control(obj)

    def on_control(self, m):
        t = m["type"]
        if t in REQ:
            validate(m)
        if not self.authed:
            if t == "AuthOk":
                self.on_auth_ok(m)
            elif t == "AuthError":
                warn("AuthError:", m)
                event("AUTH_ERROR", code=m["code"], retry_ms=m.get("retry_ms", 0))
                self.auth_error = m
            elif t == "Error":
                warn("gateway Error:", m)
                event("GATEWAY_ERROR", code=m["code"])
            elif t == "Goodbye":
                event("GOODBYE", drain_ms=m.get("drain_ms", 0))
            else:
                raise ConnError(1002, "%s before AuthOk" % t)
            return
        if t in AUTH_PHASE or t in NEVER_RECEIVED:
            raise ConnError(1002, "unexpected %s" % t)
        if t == "Heartbeat":
            self.heartbeats += 1
            seq = m.get("seq", 0)
            event("HEARTBEAT", seq=seq, count=self.heartbeats)
            if not self.args.no_heartbeat_ack:
                self.send_prio(control({"type": "HeartbeatAck", "seq": seq}))
        elif t == "Registered":
            name = self.register_ids.pop(m["id"], m["tunnel"])
            log("tunnel %s registered at %s" % (name, m.get("address", "")))
            tun = self.tunnels.get(name)
            if tun is not None and m.get("address", "").rpartition(":")[2].isdigit():
                # section 6: the port stays reserved for this agent name; ask for it again
                # after a reconnect (a Register with remote_port 0 would get a new one)
                tun["assigned_port"] = int(m["address"].rpartition(":")[2])
            event("REGISTERED", id=m["id"], tunnel=m["tunnel"], address=m.get("address", ""))
        elif t == "RegisterError":
            name = self.register_ids.pop(m["id"], None)
            tun = self.tunnels.get(name)
            if (tun is not None and tun["remote_port"] == 0 and tun.pop("assigned_port", None)
                    and m["code"] == "port_unavailable"):
                log("tunnel %s: earlier port is gone, asking for any port" % name)
                self.register(name, tun)
                return
            warn("tunnel %s not registered: %s %s" % (m["tunnel"], m["code"], m.get("message", "")))
            event("REGISTER_ERROR", id=m["id"], tunnel=m["tunnel"], code=m["code"])
        elif t == "Goodbye":
            log("gateway Goodbye:", m)
            event("GOODBYE", drain_ms=m.get("drain_ms", 0), reason=m.get("reason", ""))
        elif t == "Error":
            warn("gateway Error:", m)
            event("GATEWAY_ERROR", code=m["code"])
        elif t == "Open":
            self.on_open(m)
        elif t == "Fin":
            st = self.check_stream_id(m["stream"], t)
            if st is not None:
                st.on_fin()
        elif t == "Reset":
            st = self.check_stream_id(m["stream"], t)
            if st is not None:
                log("stream %d: Reset from gateway: %s %s" % (st.id, m["code"], m.get("message", "")))
                event("STREAM_RESET_RECEIVED", stream=st.id, code=m["code"])
                st.close(abort=True)
                self.streams.pop(st.id, None)
        elif t == "Window":
            st = self.check_stream_id(m["stream"], t)
            self.stats["windows_in"] += 1
            if st is not None:
                st.on_window(m["credit"])
        elif t == "Blocked":
            # A hint that the gateway waits for credit; this agent keeps fixed windows.
            self.check_stream_id(m["stream"], t)
        else:
            log("ignoring unknown message type", t)
            self.stats["unknown_types"] += 1

    def on_auth_ok(self, m):
        self.authed = True
        self.gw_window = m["window"]
        self.gw_max_frame = m["max_frame"]
        self.gw_max_message = m["max_message"]
        self.gw_max_streams = m["max_streams"]
        # data bytes per frame: within max_frame (4-byte stream id) and max_message (5-byte header)
        self.chunk = max(1, min(64 * 1024, self.gw_max_frame - 4, self.gw_max_message - 9))
        log("AuthOk", m)
        event("AUTHOK", session=m["session"], heartbeat_ms=m["heartbeat_ms"], window=m["window"],
              max_frame=m["max_frame"], max_message=m["max_message"], max_streams=m["max_streams"],
              max_tunnels=m["max_tunnels"])
        for name, t in self.tunnels.items():
            self.register(name, t)

    def register(self, name, t):
        self.next_register_id += 1
        rid = self.next_register_id
        self.register_ids[rid] = name
        self.send_prio(control({"type": "Register", "id": rid, "tunnel": name,
                                "protocol_id": t["protocol_id"],
                                "remote_port": t["remote_port"] or t.get("assigned_port", 0),
                                "options": {}}))

    def on_open(self, m):
        sid = m["stream"]
        if sid % 2 == 0 or sid <= self.highest:
            raise ConnError(1002, "Open with stream id %d (highest so far %d)" % (sid, self.highest))
        self.highest = sid
        self.stats["opens"] += 1
        t = self.tunnels.get(m["tunnel"])
        st = Stream(self, sid, m["protocol_id"], m["tunnel"])
        self.streams[sid] = st
        log("stream %d: Open tunnel=%s peer=%s" % (sid, m["tunnel"], m.get("peer")))
        if t is None:
            self.refuse(st, "error", "no tunnel %s here" % m["tunnel"])
            return
        if len(self.streams) > self.args.max_streams:
            self.refuse(st, "limit", "agent at max_streams")
            return
        st.tasks.append(asyncio.ensure_future(st.run(t["host"], t["port"])))

    async def watchdog(self):
        timeout = self.args.heartbeat_timeout_ms / 1000
        while not self.closing:
            await asyncio.sleep(min(1.0, timeout / 4))
            if time.monotonic() - self.last_recv > timeout:
                await self.conn_error(4004, "nothing from the gateway for %d ms"
                                      % self.args.heartbeat_timeout_ms)
                return

    async def reader_loop(self):
        """The only reader of the WebSocket; keeps reading (and dropping) while closing."""
        try:
            while True:
                msg = await self.ws.recv()
                self.last_recv = time.monotonic()
                self.stats["messages_in"] += 1
                self.stats["max_message_in"] = max(self.stats["max_message_in"], len(msg))
                if not self.closing:
                    self.handle(msg)
        except ConnError as e:
            await self.conn_error(e.code, e.reason)
            await self.ws.drain_until_close(self.args.close_timeout)
        except PeerClosed as e:
            if not self.closing:
                self.closed_by_peer = True
            self.finish(e.code, e.reason)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError) as e:
            self.finish(None, "connection lost: %s" % (e or type(e).__name__))

    async def run(self):
        """Authenticate and serve until the connection ends. Returns (code, reason, by_peer)."""
        writer = asyncio.ensure_future(self.writer_loop())
        self.send_prio(control({"type": "Auth", "token": self.args.token, "agent": self.args.name,
                                "version": VERSION, "protocol": 1, "window": self.args.window,
                                "max_frame": self.args.max_frame,
                                "max_message": self.args.max_message}))
        reader = asyncio.ensure_future(self.reader_loop())
        dog = asyncio.ensure_future(self.watchdog())
        code, reason = await self.ended
        dog.cancel()
        if self.ws.close_sent and not reader.done():
            # we initiated the close: the reader goes on until the gateway's Close (bounded)
            try:
                await asyncio.wait_for(asyncio.shield(reader), self.args.close_timeout)
            except asyncio.TimeoutError:
                pass
        reader.cancel()
        writer.cancel()
        for st in list(self.streams.values()):
            st.close(abort=True)
        self.streams.clear()
        if self.ws.close_sent or self.ws.close_received:
            await self.ws.wait_eof(self.args.close_timeout)
        self.ws.abort()
        return code, reason, self.closed_by_peer

    async def goodbye(self, reason):
        """Agent shutdown: Goodbye, then close 1000."""
        if self.closing:
            return
        self.send_prio(control({"type": "Goodbye", "reason": reason}))
        await self.flush(2)
        self.ws.send_close_nowait(1000, reason)
        self.finish(1000, reason)


# ───────────────────────── main ─────────────────────────

def parse_tunnel(spec):
    # PROTO:REMOTE_PORT:LOCAL_HOST:LOCAL_PORT, LOCAL_HOST may be [v6]
    proto, rest = spec.split(":", 1)
    rport, rest = rest.split(":", 1)
    if rest.startswith("["):
        host, _, rest = rest[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, port = rest.rsplit(":", 1)
    pid = PROTOCOL_IDS.get(proto)
    if pid is None:
        pid = int(proto)
    return {"protocol_id": pid, "remote_port": int(rport), "host": host, "port": int(port),
            "name": "%s-%s-%s" % (proto, rport, port)}


def make_ssl_context(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if args.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        warn("WARNING: --insecure: the gateway certificate is not verified")
    elif args.ca:
        ctx.load_verify_locations(cafile=args.ca)
    else:
        ctx.load_default_certs()
    return ctx


async def main_async(args):
    url = urllib.parse.urlsplit(args.gateway)
    if url.scheme not in ("wss", "ws"):
        raise SystemExit("--gateway must be wss:// or ws://")
    if url.scheme == "ws" and not args.insecure:
        raise SystemExit("ws:// needs --insecure")
    host = url.hostname
    port = url.port or (443 if url.scheme == "wss" else 80)
    path = url.path or "/muxgate"
    ssl_ctx = make_ssl_context(args) if url.scheme == "wss" else None

    tunnels = {}
    for spec in args.tunnel:
        t = parse_tunnel(spec)
        tunnels[t.pop("name")] = t

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    delay = args.reconnect_initial_ms / 1000
    while True:
        started = time.monotonic()
        code, reason, by_peer = None, "", False
        try:
            ws = await WebSocket.connect(host, port, path, ssl_ctx, args.max_message,
                                         args.connect_timeout)
            if args.pin:
                sslobj = ws.w.get_extra_info("ssl_object")
                got = spki_pin(sslobj.getpeercert(binary_form=True))
                if got != args.pin:
                    ws.abort()
                    raise HandshakeError("pin", {}, b"", "pin mismatch: gateway key is %s" % got)
                event("PIN_OK", pin=got)
            event("CONNECTED", gateway=args.gateway)
            sess = Session(args, ws, tunnels)
            stopper = asyncio.ensure_future(stop.wait())
            runner = asyncio.ensure_future(sess.run())
            done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done and not runner.done():
                await sess.goodbye("agent shutting down")
            stopper.cancel()
            code, reason, by_peer = await runner
            event("STATS", **{k: sess.stats[k] for k in sorted(sess.stats)})
            event("CLOSED", code=code, reason=reason or "-", by_peer=by_peer,
                  heartbeats=sess.heartbeats, opens=sess.stats["opens"],
                  late_frames=sess.stats["late_frames"])
            if sess.auth_error is not None:
                retry = sess.auth_error.get("retry_ms", 0) / 1000
                delay = max(delay, retry)
                if not args.reconnect:
                    return 2
        except HandshakeError as e:
            warn("handshake failed:", e)
            event("HANDSHAKE_FAILED", status=e.status)
            if not args.reconnect:
                return 2
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ssl.SSLError) as e:
            warn("cannot reach the gateway:", e or type(e).__name__)
            event("CONNECT_FAILED", error=type(e).__name__)
            if not args.reconnect:
                return 2
        if stop.is_set():
            return 0
        if not args.reconnect:
            return 0 if code in (1000, 1001) else 3
        # section 6: exponential backoff with jitter, reset after a stable session
        if time.monotonic() - started >= args.stable_after_s:
            delay = args.reconnect_initial_ms / 1000
        wait = random.uniform(delay / 2, delay)
        log("reconnecting in %.2f s" % wait)
        try:
            await asyncio.wait_for(stop.wait(), wait)
            return 0
        except asyncio.TimeoutError:
            pass
        delay = min(delay * 2, args.reconnect_max_ms / 1000)


def main():
    global _verbose
    p = argparse.ArgumentParser(description="muxgate agent written from docs/protocol.md")
    p.add_argument("--gateway", required=True, help="wss://host[:port][/path]")
    p.add_argument("--ca", help="PEM CA file for the gateway certificate")
    p.add_argument("--pin", help="sha256//BASE64 public key pin, checked in addition")
    p.add_argument("--insecure", action="store_true", help="skip certificate checks")
    p.add_argument("--token-env", default="MUXGATE_TOKEN", help="environment variable with the token")
    p.add_argument("--name", default=socket.gethostname().split(".")[0])
    p.add_argument("--tunnel", action="append", default=[], help="PROTO:REMOTE_PORT:HOST:PORT")
    p.add_argument("--window", type=int, default=256 * 1024, help="receive window per stream")
    p.add_argument("--max-frame", type=int, default=1 << 20)
    p.add_argument("--max-message", type=int, default=4 << 20)
    p.add_argument("--max-control", type=int, default=64 * 1024)
    p.add_argument("--max-streams", type=int, default=4096)
    p.add_argument("--heartbeat-timeout-ms", type=int, default=30000)
    p.add_argument("--connect-timeout", type=float, default=10.0)
    p.add_argument("--close-timeout", type=float, default=5.0)
    p.add_argument("--reconnect", action="store_true", help="reconnect with backoff after a close")
    p.add_argument("--reconnect-initial-ms", type=int, default=1000)
    p.add_argument("--reconnect-max-ms", type=int, default=30000)
    p.add_argument("--stable-after-s", type=float, default=60)
    p.add_argument("--credit-every", type=int, default=0,
                   help="return credit once this many bytes were delivered (default window/4)")
    p.add_argument("--ws-fragment", type=int, default=0,
                   help="test: split every WebSocket message into frames of this size")
    p.add_argument("--no-heartbeat-ack", action="store_true", help="test: never answer Heartbeat")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()
    _verbose = args.verbose
    args.token = os.environ.get(args.token_env)
    if not args.token:
        p.error("the token is read from $%s, which is empty" % args.token_env)
    if args.max_frame < 4096 or args.max_message < 16384 or args.max_message <= args.max_frame + 5:
        p.error("max_frame >= 4096, max_message >= 16384 and > max_frame + 5 (section 3)")
    if not args.tunnel:
        p.error("at least one --tunnel")
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
