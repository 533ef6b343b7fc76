"""Many idle agents on one gateway, cheaply: a minimal muxgate agent over
WebSocket (TLS or not) in asyncio. It speaks just enough of docs/protocol.md
to be an idle agent: the upgrade with subprotocol muxgate.v1, one Auth control
frame, then HeartbeatAck for every Heartbeat and Pong for every Ping.

Run by the harness as a child process:

    agents.py --url wss://127.0.0.1:P/muxgate --token T --steps 1000,10000

For each step it connects agents until that many are authenticated (or have
failed), prints one JSON line {"step", "connected", "failed", "seconds",
"errors"} and waits for a line on stdin before the next step. After the last
step it holds every connection until stdin reaches EOF.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import ssl
import struct
import sys
import time
from urllib.parse import urlsplit

# Connections in their handshake at once: below the gateway's max_handshakes
# (256), so the load client is never refused for being impatient.
HANDSHAKE_CONCURRENCY = 128


def mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame: FIN, masked."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    key = os.urandom(4)
    return head + key + mask(payload, key)


def control(obj: dict) -> bytes:
    """One muxgate control frame: [0x00][u32 BE length][JSON]."""
    body = json.dumps(obj, separators=(",", ":")).encode()
    return b"\x00" + struct.pack(">I", len(body)) + body


async def read_message(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One whole WebSocket message (continuations joined)."""
    data, first_op = b"", None
    while True:
        h = await reader.readexactly(2)
        fin, op, n = h[0] & 0x80, h[0] & 0x0F, h[1] & 0x7F
        if n == 126:
            n = struct.unpack(">H", await reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", await reader.readexactly(8))[0]
        key = await reader.readexactly(4) if h[1] & 0x80 else None
        payload = await reader.readexactly(n)
        if key:
            payload = mask(payload, key)
        if op >= 0x8:            # control frames may interleave a fragmented message
            return op, payload
        if first_op is None:
            first_op = op
        data += payload
        if fin:
            return first_op, data


def frames(message: bytes):
    at = 0
    while at + 5 <= len(message):
        proto, n = message[at], struct.unpack(">I", message[at + 1:at + 5])[0]
        yield proto, message[at + 5:at + 5 + n]
        at += 5 + n


class Agent:
    def __init__(self, index: int, url, token: str, tls: ssl.SSLContext | None):
        self.name = f"load-{index:05d}"
        self.url, self.token, self.tls = url, token, tls
        self.ready = asyncio.get_running_loop().create_future()
        self.writer: asyncio.StreamWriter | None = None

    async def run(self, gate: asyncio.Semaphore) -> None:
        try:
            async with gate:
                reader, writer = await self.handshake()
            await self.serve(reader, writer)
        except Exception as e:  # noqa: BLE001 - any failure is one failed agent
            if not self.ready.done():
                self.ready.set_result(f"{type(e).__name__}: {e}")

    async def handshake(self):
        u = self.url
        port = u.port or (443 if u.scheme == "wss" else 80)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(u.hostname, port, ssl=self.tls,
                                    server_hostname="" if self.tls else None), 30)
        self.writer = writer
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET {u.path or '/muxgate'} HTTP/1.1\r\nHost: {u.hostname}:{port}\r\n"
                      f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: muxgate.v1\r\n"
                      f"User-Agent: muxgate-bench\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise RuntimeError(f"upgrade refused: {status.decode(errors='replace')}")
        writer.write(ws_frame(0x2, control({
            "type": "Auth", "token": self.token, "agent": self.name, "version": "bench",
            "protocol": 1, "window": 262144, "max_frame": 1048576, "max_message": 4194304})))
        while True:
            op, msg = await asyncio.wait_for(read_message(reader), 30)
            if op == 0x8:
                raise RuntimeError(f"closed during auth: {msg[2:].decode(errors='replace')}")
            if op != 0x2:
                continue
            for proto, body in frames(msg):
                if proto != 0:
                    continue
                m = json.loads(body)
                if m.get("type") == "AuthOk":
                    self.ready.set_result(None)
                    return reader, writer
                if m.get("type") in ("AuthError", "Error"):
                    raise RuntimeError(f"{m.get('type')}: {m.get('code')} {m.get('message', '')}")

    async def serve(self, reader, writer) -> None:
        while True:
            op, msg = await read_message(reader)
            if op == 0x9:
                writer.write(ws_frame(0xA, msg))
            elif op == 0x8:
                return
            elif op == 0x2:
                for proto, body in frames(msg):
                    if proto == 0:
                        m = json.loads(body)
                        if m.get("type") == "Heartbeat":
                            writer.write(ws_frame(0x2, control(
                                {"type": "HeartbeatAck", "seq": m.get("seq", 0)})))

    def close(self) -> None:
        if self.writer:
            self.writer.transport.abort()


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--steps", default="1000")
    args = ap.parse_args()
    url = urlsplit(args.url)
    tls = None
    if url.scheme == "wss":
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE   # load client; the real agent verifies
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(HANDSHAKE_CONCURRENCY)
    agents: list[Agent] = []
    tasks = []
    for step in [int(s) for s in args.steps.split(",") if s]:
        t0 = time.monotonic()
        new = []
        while len(agents) < step:
            a = Agent(len(agents), url, args.token, tls)
            agents.append(a)
            new.append(a)
            tasks.append(asyncio.ensure_future(a.run(gate)))
        results = await asyncio.gather(*(a.ready for a in new))
        errors = {}
        for r in results:
            if r:
                errors[r] = errors.get(r, 0) + 1
        connected = sum(1 for a in agents if a.ready.done() and a.ready.result() is None)
        print(json.dumps({"step": step, "connected": connected, "failed": len(agents) - connected,
                          "seconds": round(time.monotonic() - t0, 2),
                          "errors": dict(list(errors.items())[:5])}), flush=True)
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
    # Hold until the harness closes our stdin.
    while await loop.run_in_executor(None, sys.stdin.readline):
        pass
    for a in agents:
        a.close()
    for t in tasks:
        t.cancel()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
