#!/usr/bin/python3
"""Configured limits and session rules, each enforced with the documented
answer (docs/configuration.md, docs/protocol.md):

* max_streams (per agent): with 4 streams open the 5th public connection
  is reset; once one ends, a new one works.
* max_tunnels_per_agent: RegisterError{limit}.
* max_agents: a second agent gets AuthError{limit} and close 4007.
* stream_idle_timeout_s: an idle connection is reset, a busy one is not.
* heartbeat_timeout_ms: a client that never answers Heartbeat is closed 4004.
* a tunnel whose port is taken by another program: RegisterError
  {port_unavailable}; a duplicate tunnel name: RegisterError{duplicate}.
* replacement: a second agent of the same name takes the session over (the
  old one is closed 4003) and the public port keeps listening, now routed
  to the new agent's target."""
import asyncio
import socket
import threading

import harness as h


def banner_handler(name):
    def handler(conn, idx):
        conn.sendall(f"{name}\n".encode())
        h.echo_handler(conn, idx)
    return handler


def ends(sock, timeout=h.EVENT_TIMEOUT):
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return "eof"
    except ConnectionResetError:
        return "rst"
    except socket.timeout:
        raise h.Failure(f"connection still open after {timeout} s")


@h.case("max_streams_per_agent")
def max_streams(env):
    srv = env.echo_server()
    gw = env.gateway(config=lambda p: h.gateway_toml(env, p, limits="max_streams = 4"))
    agent = env.agent(gw, [f"tcp:0:127.0.0.1:{srv.port}"])
    port = agent.wait_tunnel(h.tunnel_name(srv.port))
    held = []
    for i in range(4):
        s = h.connect(port)
        s.sendall(b"k")
        h.check_eq(h.recv_exact(s, 1), b"k", f"stream {i} open")
        held.append(s)
    h.check_eq(h.how_connection_ends(port), "rst", "the 5th connection over max_streams")
    gw.proc.wait_log(r"refusing connection: max_streams_per_agent \(4\) reached")
    held.pop().close()
    h.wait_for(lambda: _works(port), h.EVENT_TIMEOUT, "a new connection to work once one ended")
    for s in held:
        s.close()


def _works(port):
    try:
        return h.echo_round_trip(port, b"again")
    except (h.Failure, OSError):
        return False


async def register_many(gw, names):
    ws = await h.ws_connect(gw)
    await ws.send(h.auth_msg(agent="collector"))
    ok = await h.ws_until(ws, lambda m: m.get("type") == "AuthOk")
    answers = []
    for i, n in enumerate(names):
        await ws.send(h.control({"type": "Register", "id": i + 1, "tunnel": n, "protocol_id": 3}))
        answers.append(await h.ws_until(ws, lambda m: m.get("type") in ("Registered",
                                                                          "RegisterError")))
    await ws.close()
    return ok, answers


@h.case("max_tunnels_and_duplicate_names")
def max_tunnels(env):
    gw = env.gateway(config=lambda p: h.gateway_toml(env, p, limits="max_tunnels_per_agent = 2"))
    ok, answers = asyncio.run(register_many(gw, ["one", "one", "two", "three"]))
    h.check_eq(ok.get("max_tunnels"), 2, "AuthOk.max_tunnels")
    got = [(a["type"], a.get("code")) for a in answers]
    h.check_eq(got, [("Registered", None), ("RegisterError", "duplicate"), ("Registered", None),
                     ("RegisterError", "limit")], "answers to Register one, one, two, three")


@h.case("max_agents")
def max_agents(env):
    srv = env.echo_server()
    gw = env.gateway(config=lambda p: h.gateway_toml(env, p, limits="max_agents = 1"))
    first = env.agent(gw, [f"tcp:0:127.0.0.1:{srv.port}"], name="first")
    first.wait_tunnel(h.tunnel_name(srv.port))

    async def second():
        ws = await h.ws_connect(gw)
        await ws.send(h.auth_msg(agent="second"))
        return await h.ws_closed(ws)

    code, reason, seen = asyncio.run(second())
    errs = [m for m in seen if m.get("type") == "AuthError"]
    h.check(errs and errs[0].get("code") == "limit", f"AuthError limit (got {seen})")
    h.check(errs[0].get("retry_ms", 0) > 0, "AuthError.retry_ms tells the agent to wait")
    h.check_eq(code, 4007, "close code over max_agents")
    h.check(not first.proc.find(r"gateway connection closed"), "the first agent is untouched")


@h.case("stream_idle_timeout")
def idle(env):
    srv = env.echo_server(tolerate_reset=True)
    gw = env.gateway(config=lambda p: h.gateway_toml(env, p, limits="stream_idle_timeout_s = 1"))
    agent = env.agent(gw, [f"tcp:0:127.0.0.1:{srv.port}"])
    port = agent.wait_tunnel(h.tunnel_name(srv.port))
    quiet = h.connect(port)
    quiet.sendall(b"q")
    h.check_eq(h.recv_exact(quiet, 1), b"q", "idle connection opened")
    busy = h.connect(port)
    stop = threading.Event()
    busy_errors = []

    def keep_busy():
        try:
            while not stop.is_set():
                busy.sendall(b"b")
                h.check_eq(h.recv_exact(busy, 1), b"b", "busy echo")
                stop.wait(0.2)
        except Exception as e:
            busy_errors.append(repr(e))

    t = threading.Thread(target=keep_busy)
    t.start()
    try:
        how = ends(quiet, 30 * h.SLOW)
    finally:
        stop.set()
        t.join(h.EVENT_TIMEOUT)
    print(f"  idle connection ended by {how}", flush=True)
    h.check(not busy_errors, f"the busy connection was cut too: {busy_errors}")
    busy.close()
    quiet.close()


@h.case("heartbeat_timeout_closes_silent_agent")
def heartbeat(env):
    gw = env.gateway(config=lambda p: h.gateway_toml(
        env, p, limits="heartbeat_interval_ms = 200\nheartbeat_timeout_ms = 1000"))

    async def silent():
        ws = await h.ws_connect(gw)
        await ws.send(h.auth_msg(agent="mute"))
        await h.ws_until(ws, lambda m: m.get("type") == "AuthOk")
        return await h.ws_closed(ws)  # heartbeats arrive; we never answer

    code, reason, seen = asyncio.run(silent())
    beats = [m for m in seen if m.get("type") == "Heartbeat"]
    h.check(len(beats) >= 2, f"heartbeats were sent ({len(beats)})")
    h.check_eq([m.get("seq") for m in beats], list(range(1, len(beats) + 1)), "Heartbeat seq")
    h.check_eq(code, 4004, "close code without HeartbeatAck")
    h.check("heartbeat_timeout" in reason, f"close reason: {reason!r}")


@h.case("port_taken_by_another_program")
def port_taken(env):
    srv = env.echo_server()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    taken = blocker.getsockname()[1]
    try:
        gw = env.gateway()
        agent = env.agent(gw, [f"tcp:{taken}:127.0.0.1:{srv.port}",
                               f"tcp:0:127.0.0.1:{srv.port}"])
        agent.proc.wait_log(r"tunnel tcp-%d refused by the gateway: cannot listen on "
                            r"127\.0\.0\.1:%d: .*\(port_unavailable\)$" % (taken, taken))
        h.echo_round_trip(agent.wait_tunnel(h.tunnel_name(srv.port)))
    finally:
        blocker.close()


@h.case("replacement_by_same_name")
def replacement(env):
    one = env.server(banner_handler("one"), "target-one")
    two = env.server(banner_handler("two"), "target-two")
    gw = env.gateway()
    fixed = h.pick_port()
    a1 = env.agent(gw, [f"tcp:{fixed}:127.0.0.1:{one.port}"], name="first-process",
                   agent_name="twin")
    h.check_eq(a1.wait_tunnel(f"tcp-{fixed}"), fixed, "port of the first twin")
    s = h.connect(fixed)
    h.check_eq(h.recv_exact(s, 4), b"one\n", "routed to the first twin's target")
    s.close()
    mark = a1.proc.mark()
    a2 = env.agent(gw, [f"tcp:{fixed}:127.0.0.1:{two.port}"], name="second-process",
                   agent_name="twin")
    h.check_eq(a2.wait_tunnel(f"tcp-{fixed}"), fixed, "port of the second twin")
    a1.proc.wait_log(r"gateway connection closed: .*\(4003\)$", after=mark)
    a1.proc.stop()  # else the two would take turns replacing each other
    gw.proc.wait_log(r"agent=twin session from .* replaced by a newer connection")
    s = h.connect(fixed)
    h.check_eq(h.recv_exact(s, 4), b"two\n", "now routed to the second twin's target")
    s.close()


if __name__ == "__main__":
    raise SystemExit(h.main())
