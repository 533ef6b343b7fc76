#!/usr/bin/python3
"""11. Malformed input from raw WebSocket clients (python3-websockets over
wss, subprotocol muxgate.v1, path /muxgate) closes only the connection that
sent it, with the close code docs/protocol.md gives, while a real agent's
tunnel on the same gateway keeps moving verified data the whole time, and
the gateway never dies.

Also: a client that never authenticates is closed (4001) after
auth_timeout_ms (500 here, from the configuration file); a wrong or missing
subprotocol gets HTTP 400, another path 404, the agent path without an
upgrade 426; a WebSocket frame cut off mid-way just ends that connection."""
import asyncio
import http.client
import socket
import struct
import threading

import harness as h

AUTH_TIMEOUT_MS = 500
MAX_MESSAGE = 4 * h.MiB  # default [limits] max_message


class Traffic:
    """Echo round trips through the real agent's tunnel until stopped."""

    def __init__(self, port):
        self.port = port
        self.rounds = 0
        self.errors = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def one(self, seed):
        s = h.connect(self.port)
        size = 256 * h.KiB + seed % 1000
        out = {}

        def sender():
            out["sent"] = h.send_pattern(s, seed, size)
            s.shutdown(socket.SHUT_WR)

        t = threading.Thread(target=sender)
        t.start()
        n, digest = h.recv_hash(s)
        t.join(h.IO_TIMEOUT)
        s.close()
        if n != size or digest != out.get("sent"):
            raise AssertionError(f"round {seed}: echoed {n} of {size} bytes, hash match "
                                 f"{digest == out.get('sent')}")

    def run(self):
        seed = 100
        while not self.stop.is_set():
            try:
                self.one(seed)
                self.rounds += 1
            except Exception as e:
                self.errors.append(repr(e))
            seed += 1

    def finish(self):
        self.stop.set()
        self.thread.join(h.IO_TIMEOUT)


def raw_ws_frame(payload_len, payload=b"", opcode=0x2):
    """A masked client WebSocket frame header announcing payload_len bytes
    (mask key 0, so the payload goes as is), followed by `payload`."""
    if payload_len < 126:
        head = struct.pack(">BB", 0x80 | opcode, 0x80 | payload_len)
    elif payload_len < 65536:
        head = struct.pack(">BBH", 0x80 | opcode, 0x80 | 126, payload_len)
    else:
        head = struct.pack(">BBQ", 0x80 | opcode, 0x80 | 127, payload_len)
    return head + b"\0\0\0\0" + payload


def big_control(n):
    pad = "x" * n
    return h.control({"type": "Heartbeat", "pad": pad})


# Error.code is the close code's name (docs/protocol.md section 7).
CODE_NAMES = {1002: "protocol_error", 1003: "unsupported_data", 1008: "policy_violation",
              1009: "message_too_big", 4002: "auth_failed", 4005: "version"}

# name -> (needs auth first, messages to send, expected close code)
CASES = [
    ("text message before auth", False, ["hello"], 1003),
    ("text message after auth", True, ["hello"], 1003),
    ("empty message", False, [b""], 1002),
    ("bad JSON", False, [h.frame(0, b"{not json")], 1002),
    ("JSON that is not an object", False, [h.frame(0, b"[1,2,3]")], 1002),
    ("data before Auth", False, [h.data_frame(3, 1, b"hi")], 1008),
    ("HeartbeatAck before Auth", False, [h.control({"type": "HeartbeatAck", "seq": 1})], 1008),
    ("truncated frame header", False, [b"\x00\x00\x00"], 1002),
    ("truncated frame header after a good frame", True,
     [h.control({"type": "HeartbeatAck", "seq": 0}) + b"\x03\x00"], 1002),
    ("payload_length past the message end", False, [b"\x00\x00\x00\x00\x64" + b"{}"], 1002),
    ("oversize frame length (> max_frame)", False, [b"\x03\xff\xff\xff\xf0" + b"\0" * 16], 1009),
    ("control payload > 64 KiB", True, [big_control(70 * 1024)], 1009),
    ("wrong token", False, [h.auth_msg(token="wrong", agent="wrongtoken")], 4002),
    ("unsupported protocol version", False, [h.auth_msg(agent="v2", protocol=2)], 4005),
    ("invalid agent name", False, [h.auth_msg(agent="bad name!")], 1008),
    ("window below the minimum", False, [h.auth_msg(agent="tiny", window=512)], 1008),
    ("max_frame below the minimum", False, [h.auth_msg(agent="tiny", max_frame=1000)], 1008),
    ("window 0 (out of range)", False, [h.auth_msg(agent="tiny", window=0)], 1002),
    ("Auth missing its token", False, [h.control({"type": "Auth", "agent": "x", "protocol": 1})],
     1002),
    ("data for a stream never opened", True, [h.data_frame(3, 99, b"data")], 1002),
    ("data for stream id 0", True, [h.data_frame(3, 0, b"data")], 1002),
    ("data frame shorter than a stream id", True, [h.frame(3, b"\x00\x01")], 1002),
    ("Window for a stream never opened", True,
     [h.control({"type": "Window", "stream": 5, "credit": 100})], 1002),
    ("Fin for an even stream id", True, [h.control({"type": "Fin", "stream": 2})], 1002),
    ("second Auth", True, [h.auth_msg(agent="twice")], 1002),
    ("Heartbeat from the agent side", True, [h.control({"type": "Heartbeat", "seq": 1})], 1002),
    ("Open from the agent side", True,
     [h.control({"type": "Open", "stream": 1, "tunnel": "t", "protocol_id": 3})], 1002),
    ("Register with protocol_id 0", True,
     [h.control({"type": "Register", "id": 1, "tunnel": "t", "protocol_id": 0})], 1002),
]


async def one_case(gw, idx, needs_auth, messages):
    ws = await h.ws_connect(gw)
    if needs_auth:
        await ws.send(h.auth_msg(agent=f"abuser{idx}"))
        ok = await h.ws_until(ws, lambda m: m.get("type") in ("AuthOk", "AuthError"))
        h.check_eq(ok.get("type"), "AuthOk", "raw client authenticated")
    for m in messages:
        await ws.send(m)
    code, reason, seen = await h.ws_closed(ws)
    return code, reason, seen


async def raw_bytes_case(gw, raw, after_auth):
    """Writes raw WebSocket bytes past the library; returns the close code."""
    ws = await h.ws_connect(gw)
    if after_auth:
        await ws.send(h.auth_msg(agent="rawbytes"))
        await h.ws_until(ws, lambda m: m.get("type") == "AuthOk")
    ws.transport.write(raw)
    code, reason, _ = await h.ws_closed(ws)
    return code, reason


async def cut_off_case(gw):
    """Half a WebSocket frame, then the TCP connection ends."""
    ws = await h.ws_connect(gw)
    await ws.send(h.auth_msg(agent="cutoff"))
    await h.ws_until(ws, lambda m: m.get("type") == "AuthOk")
    ws.transport.write(raw_ws_frame(1000, b"\x03" + b"\0" * 100))
    ws.transport.abort()


async def unknown_type_is_ignored(gw):
    ws = await h.ws_connect(gw)
    await ws.send(h.auth_msg(agent="future"))
    await h.ws_until(ws, lambda m: m.get("type") == "AuthOk")
    await ws.send(h.control({"type": "SomethingNewer", "x": 1}))
    await ws.send(h.control({"type": "Register", "id": 1, "tunnel": "later", "protocol_id": 3}))
    reg = await h.ws_until(ws, lambda m: m.get("type") in ("Registered", "RegisterError"))
    await ws.close()
    return reg


async def never_authenticates(gw):
    ws = await h.ws_connect(gw)
    code, reason, _ = await h.ws_closed(ws, timeout=h.EVENT_TIMEOUT)
    return code, reason


async def handshake_status(gw, path, subprotocols):
    import websockets
    try:
        ws = await h.ws_connect(gw, path=path, subprotocols=subprotocols)
    except websockets.exceptions.InvalidStatusCode as e:
        return e.status_code
    await ws.close()
    return 101


def plain_get(gw, path):
    c = http.client.HTTPSConnection(gw.host, gw.port, timeout=h.EVENT_TIMEOUT,
                                    context=h.client_ssl())
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


@h.case("malformed_input_closes_only_that_connection")
def malformed(env):
    gw = env.gateway(config=lambda p: h.gateway_toml(
        env, p, auth="failure_burst = 100000", limits=f"auth_timeout_ms = {AUTH_TIMEOUT_MS}"))
    srv = env.echo_server()
    agent = env.agent(gw, [f"tcp:0:127.0.0.1:{srv.port}"], name="real")
    port = agent.wait_tunnel(h.tunnel_name(srv.port))
    traffic = Traffic(port)
    h.wait_for(lambda: traffic.rounds >= 1 or traffic.errors, h.EVENT_TIMEOUT,
               "a first verified round trip through the real tunnel")

    wrong = []

    def expect(what, got, want):
        if got != want:
            wrong.append(f"{what}: got {got!r}, want {want!r}")
        print(f"  {'ok ' if got == want else 'BAD'} {what}: {got!r}", flush=True)

    for idx, (name, needs_auth, messages, want) in enumerate(CASES):
        code, reason, seen = asyncio.run(one_case(gw, idx, needs_auth, messages))
        expect(f"{name} -> close code", code, want)
        # "The side that detects it SHOULD send Error{code, message}" first,
        # code being the close code's name.
        # A refused Auth is explained by its AuthError alone.
        errors = [m.get("code") for m in seen if m.get("type") == "Error"]
        auth_error = any(m.get("type") == "AuthError" for m in seen)
        expect(f"{name}: Error before the close", errors, [] if auth_error else [CODE_NAMES[want]])
        expect(f"{name}: gateway alive", gw.proc.alive(), True)

    # Below the library: a frame header announcing more than max_message.
    code, _ = asyncio.run(raw_bytes_case(gw, raw_ws_frame(MAX_MESSAGE + 1, b"\x03" + b"\0" * 64),
                                         after_auth=True))
    expect("WebSocket message > max_message -> close code", code, 1009)
    code, _ = asyncio.run(raw_bytes_case(gw, raw_ws_frame(8 * MAX_MESSAGE, b"\x00"),
                                         after_auth=False))
    expect("WebSocket message > max_message before auth -> close code", code, 1009)
    mark = gw.proc.mark()
    asyncio.run(cut_off_case(gw))
    gw.proc.wait_log(r"agent=cutoff disconnected from ", after=mark)
    expect("frame cut off: gateway alive", gw.proc.alive(), True)

    reg = asyncio.run(unknown_type_is_ignored(gw))
    expect("unknown message type after auth is ignored", reg.get("type"), "Registered")

    code, reason = asyncio.run(never_authenticates(gw))
    expect("no Auth within auth_timeout -> close code", code, 4001)
    expect("auth timeout reason names the limit", f"({AUTH_TIMEOUT_MS} ms)" in reason, True)

    expect("wrong subprotocol -> HTTP", asyncio.run(handshake_status(gw, "/muxgate", ["muxgate.v2"])),
           400)
    expect("missing subprotocol -> HTTP", asyncio.run(handshake_status(gw, "/muxgate", None)), 400)
    expect("other path -> HTTP", asyncio.run(handshake_status(gw, "/other", ["muxgate.v1"])), 404)
    expect("plain GET of the agent path -> HTTP", plain_get(gw, "/muxgate")[0], 426)
    expect("plain GET of / -> HTTP", plain_get(gw, "/")[0], 404)

    # The real tunnel moved data during all of it, and still does.
    rounds_during = traffic.rounds
    traffic.finish()
    expect("traffic errors during the abuse", traffic.errors, [])
    traffic.one(99999)
    expect("real agent stayed connected", bool(agent.proc.find(r"gateway connection closed")), False)
    expect("gateway alive at the end", gw.proc.alive(), True)
    print(f"  {rounds_during} verified round trips through the real tunnel meanwhile", flush=True)
    h.check(rounds_during >= 2, "the tunnel kept transferring during the abuse")
    h.check(not wrong, "mismatches:\n    " + "\n    ".join(wrong))


class RawAgent:
    """Just enough of an agent to receive Opens and break stream rules."""

    def __init__(self, ws):
        self.ws = ws
        self.frames = []  # (protocol, payload) not yet taken

    async def pump(self, pred, timeout=h.EVENT_TIMEOUT):
        """Reads until a frame satisfies pred(protocol, payload); returns it."""
        import time
        deadline = time.monotonic() + timeout
        while True:
            for i, f in enumerate(self.frames):
                if pred(*f):
                    return self.frames.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise h.Failure("timed out waiting for a frame from the gateway")
            msg = await asyncio.wait_for(self.ws.recv(), left)
            for proto, payload in h.parse_frames(msg):
                if proto == 0 and payload.get("type") == "Heartbeat":
                    await self.ws.send(h.control({"type": "HeartbeatAck",
                                                  "seq": payload.get("seq", 0)}))
                    continue
                self.frames.append((proto, payload))

    async def control_of(self, type_, stream):
        _, m = await self.pump(lambda p, m: p == 0 and m.get("type") == type_ and
                               m.get("stream") == stream)
        return m


async def stream_rules(gw, public_port_box, clients):
    ws = await h.ws_connect(gw)
    await ws.send(h.auth_msg(agent="streambreaker"))
    ra = RawAgent(ws)
    ok = await ra.pump(lambda p, m: p == 0 and m.get("type") == "AuthOk")
    window = ok[1]["window"]
    await ws.send(h.control({"type": "Register", "id": 1, "tunnel": "t", "protocol_id": 3}))
    _, reg = await ra.pump(lambda p, m: p == 0 and m.get("type") == "Registered")
    port = int(reg["address"].rsplit(":", 1)[1])
    public_port_box.append(port)

    async def open_stream():
        c = await asyncio.get_running_loop().run_in_executor(None, h.connect, port)
        clients.append(c)
        _, o = await ra.pump(lambda p, m: p == 0 and m.get("type") == "Open")
        return c, o["stream"]

    results = {}
    abuses = [
        ("data before Opened", "protocol_error",
         lambda sid: [h.data_frame(3, sid, b"early")]),
        ("data beyond the window", "flow_control",
         lambda sid: [h.control({"type": "Opened", "stream": sid}),
                      h.data_frame(3, sid, b"\0" * (window + 1))]),
        ("Window above 2^31-1", "flow_control",
         lambda sid: [h.control({"type": "Opened", "stream": sid}),
                      h.control({"type": "Window", "stream": sid, "credit": 0x7fffffff})]),
        ("second Fin", "protocol_error",
         lambda sid: [h.control({"type": "Opened", "stream": sid}),
                      h.control({"type": "Fin", "stream": sid}),
                      h.control({"type": "Fin", "stream": sid})]),
        ("data after Fin", "stream_closed",
         lambda sid: [h.control({"type": "Opened", "stream": sid}),
                      h.control({"type": "Fin", "stream": sid}),
                      h.data_frame(3, sid, b"late")]),
        ("data with another protocol_id", "protocol_mismatch",
         lambda sid: [h.control({"type": "Opened", "stream": sid}),
                      h.data_frame(4, sid, b"wrong")]),
        ("Fin before Opened", "protocol_error",
         lambda sid: [h.control({"type": "Fin", "stream": sid})]),
    ]
    for name, want, make in abuses:
        c, sid = await open_stream()
        for m in make(sid):
            await ws.send(m)
        reset = await ra.control_of("Reset", sid)
        results[name] = (reset.get("code"), want, c)
    # The session itself goes on: a well-behaved stream echoes.
    c, sid = await open_stream()
    await ws.send(h.control({"type": "Opened", "stream": sid}) +
                  h.data_frame(3, sid, b"still here"))
    await ws.close()
    return results, c


@h.case("raw_agent_breaking_stream_rules")
def stream_errors(env):
    """A stream error resets that stream only: the gateway sends Reset with
    the code docs/protocol.md names, the public client's connection ends, and
    the session and its other streams go on."""
    gw = env.gateway()
    box, clients = [], []
    try:
        results, good = asyncio.run(stream_rules(gw, box, clients))
        good.settimeout(h.EVENT_TIMEOUT)
        h.check_eq(h.recv_exact(good, 10), b"still here", "a later stream still carries data")
        wrong = []
        for name, (got, want, c) in results.items():
            print(f"  {'ok ' if got == want else 'BAD'} {name}: Reset {got}", flush=True)
            if got != want:
                wrong.append(f"{name}: Reset code {got!r}, want {want!r}")
            c.settimeout(h.EVENT_TIMEOUT)
            try:
                while c.recv(65536):
                    pass
            except ConnectionResetError:
                pass
        h.check(not wrong, "; ".join(wrong))
    finally:
        for c in clients:
            c.close()
    h.check(gw.proc.alive(), "the gateway is alive")


if __name__ == "__main__":
    raise SystemExit(h.main())
