#!/usr/bin/python3
"""HTTP plugin with long-lived exchanges: WebSocket upgrades end to end
(python3-websockets client and server: a 16 MiB binary message and
fragmented messages echoed with checksums), Server-Sent Events arriving in
order and unbuffered (the backend sends each event only after the client
saw the previous one), and request inspection on the agent with replay."""
import asyncio
import hashlib
import json
import os
import select
import ssl
import subprocess
import threading
import time
import urllib.request

import websockets

import httpenv as he
from httpenv import h


class WsServer:
    """A websockets echo server in its own thread and event loop: each
    message comes back prefixed by nothing, and a text "sha" message asks
    for the sha256 of the last binary message received."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(h.START_TIMEOUT):
            raise h.Failure("websocket server did not start")

    async def _echo(self, ws, path=None):
        async for msg in ws:
            await ws.send(msg)

    def _run(self):
        asyncio.set_event_loop(self.loop)

        async def main():
            self.server = await websockets.serve(self._echo, "127.0.0.1", 0, max_size=None)
            self.port = self.server.sockets[0].getsockname()[1]
            self.ready.set()
            await self.server.wait_closed()
        try:
            self.loop.run_until_complete(main())
        except Exception:
            pass

    def close(self):
        self.loop.call_soon_threadsafe(self.server.close)
        self.thread.join(h.STOP_TIMEOUT)


@h.case()
def websocket_echo_through_tunnel(env):
    srv = WsServer()
    try:
        g = he.setup(env)
        he.agent(env, g, [("ws", srv.port, "{}")])
        host = f"ws.{he.BASE}"
        big = os.urandom(h.scaled(16 * 1024 * 1024, 256 * 1024))

        async def client(https):
            ctx = None
            if https:
                ctx = ssl.create_default_context(cafile=g.cert)
            port = g.port if https else g.http_port
            uri = f"{'wss' if https else 'ws'}://{host}:{port}/echo"
            async with websockets.connect(uri, host="127.0.0.1", port=port, ssl=ctx,
                                          max_size=None, open_timeout=h.IO_TIMEOUT) as ws:
                await ws.send(big)
                back = await asyncio.wait_for(ws.recv(), h.IO_TIMEOUT)
                h.check(hashlib.sha256(back).digest() == hashlib.sha256(big).digest(),
                        f"16 MiB binary message echoed intact ({len(back)} bytes)")
                # A fragmented message: many frames, one message.
                parts = [os.urandom(10000 + i) for i in range(50)]

                async def frags():
                    for p in parts:
                        yield p
                await ws.send(frags())
                back = await asyncio.wait_for(ws.recv(), h.IO_TIMEOUT)
                h.check(hashlib.sha256(back).digest() == hashlib.sha256(b"".join(parts)).digest(),
                        "fragmented message echoed intact")
                for i in range(20):
                    await ws.send(f"text {i}")
                got = [await asyncio.wait_for(ws.recv(), h.IO_TIMEOUT) for _ in range(20)]
                h.check_eq(got, [f"text {i}" for i in range(20)], "text messages in order")

        asyncio.run(client(True))
        asyncio.run(client(False))
    finally:
        srv.close()


def read_line(proc, deadline):
    """One line from proc.stdout within the deadline (select, no sleeps)."""
    buf = b""
    fd = proc.stdout.fileno()
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise h.Failure(f"no complete line in time; have {buf!r}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            b = os.read(fd, 1)
            if not b:
                raise h.Failure(f"stream ended; have {buf!r}")
            buf += b
    return buf


@h.case()
def server_sent_events_unbuffered(env):
    g = he.setup(env)
    b = he.Backend(env)
    he.agent(env, g, [("events", b.port, "{}")])
    n = 5
    for https in (True, False):
        port = g.port if https else g.http_port
        argv = ["curl", "-sSN", "--resolve", f"events.{he.BASE}:{port}:127.0.0.1", "--cacert", g.cert,
                f"{'https' if https else 'http'}://events.{he.BASE}:{port}/sse?n={n}"]
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + h.EVENT_TIMEOUT * 2
            for i in range(n):
                h.check_eq(read_line(p, deadline), f"id: {i}\n".encode(), f"event {i} id")
                h.check_eq(read_line(p, deadline), f"data: event {i}\n".encode(), f"event {i} data")
                h.check_eq(read_line(p, deadline), b"\n", f"event {i} end")
                b.gate.release()  # only now may the backend send the next one
            h.check_eq(p.wait(h.EVENT_TIMEOUT), 0, "curl exit")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    h.check_eq(b.errors, [], "every event reached the client before the next was sent")


@h.case()
def inspection_and_replay(env):
    g = he.setup(env)
    b = he.Backend(env)
    port = h.pick_port()
    a = he.agent(env, g, [("app", b.port, '{ inspect = true }')],
                 extra=f'\n[plugins.http]\ninspect = {{ listen = "127.0.0.1:{port}", entries = 3, body_bytes = 16 }}\n')
    a.proc.wait_log(r"request inspection on http://127\.0\.0\.1:%d/" % port)
    host = f"app.{he.BASE}"
    he.curl(g, host, "/hello")
    r = he.curl(g, host, "/sha256", args=["--data-binary", "0123456789abcdefXYZ"])
    h.check(r.stdout.startswith(b"19 "), f"POST through an inspected tunnel: {r.stdout!r}")

    def get(path, method="GET"):
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
        with urllib.request.urlopen(req, timeout=h.IO_TIMEOUT) as resp:
            return resp.read()

    recs = json.loads(get("/api/requests"))
    h.check_eq([(x["method"], x["path"], x["status"]) for x in recs],
               [("GET", "/hello", 200), ("POST", "/sha256", 200)], "recorded exchanges")
    h.check_eq(recs[1]["request_body"], "0123456789abcdef", "body recorded up to body_bytes")
    h.check_eq(recs[1]["request_bytes"], 19, "body size recorded")
    h.check("X-Forwarded-For: 127.0.0.1" in recs[0]["request_head"], "head recorded")
    h.check(recs[0]["response_body"] == "hello from backe", "response body prefix")
    h.check(recs[0]["duration_us"] >= 0, "timing recorded")
    h.check(b"/hello" in get("/"), "HTML page lists the requests")
    # Replay the GET: the backend sees it again, the ring records it.
    before = len(b.requests())
    new_id = json.loads(get(f"/api/replay/{recs[0]['id']}", "POST"))
    h.check_eq(len(b.requests()), before + 1, "replayed request reached the backend")
    recs = json.loads(get("/api/requests"))
    h.check_eq(len(recs), 3, "ring bounded to 3 entries")
    last = recs[-1]
    h.check_eq((str(last["id"]), last["replay"], last["status"]), (new_id, True, 200), "replay recorded")
    # A body larger than body_bytes cannot be replayed faithfully: refused.
    try:
        get(f"/api/replay/{recs[1]['id']}", "POST")
        raise h.Failure("replay of a truncated body was accepted")
    except urllib.error.HTTPError as e:
        h.check_eq(e.code, 400, "replay refused")


if __name__ == "__main__":
    raise SystemExit(h.main())
