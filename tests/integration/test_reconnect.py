#!/usr/bin/python3
"""The agent's connection breaks while both programs keep running (a relay
between them is cut or frozen).

Reset (RST both ways): both sides notice at once, open public connections
end, the agent reconnects by itself and its fixed-port tunnel is back on
the same port. Silent network (nothing arrives, nothing is closed): the
agent gives up after its heartbeat_timeout_ms (4004) and reconnects through
a fresh connection, the old session ends on the gateway (4004 or 4003,
replaced) and the tunnel works again on the same port.

Known failing: a remote_port 0 tunnel comes back on a different port,
although the README promises the agent "gets its ports back" (the old port
stays reserved, unused, for port_reservation_s)."""
import socket

import harness as h


def open_conn(port):
    s = h.connect(port)
    s.sendall(b"x")
    h.check_eq(h.recv_exact(s, 1), b"x", "echo on the connection kept open")
    return s


def ends(sock, timeout):
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return "eof"
    except ConnectionResetError:
        return "rst"
    except socket.timeout:
        raise h.Failure(f"a public connection was still open {timeout} s after its session broke")


@h.case("connection_reset_agent_reconnects")
def reset(env):
    srv = env.echo_server(tolerate_reset=True)
    gw = env.gateway()
    fwd = h.Forwarder(env, ("127.0.0.1", gw.port))
    fixed = h.pick_port()
    agent = env.agent(gw, [f"tcp:{fixed}:127.0.0.1:{srv.port}"], name="blip",
                      url=f"wss://localhost:{fwd.port}")
    h.check_eq(agent.wait_tunnel(f"tcp-{fixed}"), fixed, "fixed port")
    held = open_conn(fixed)
    amark, gmark = agent.proc.mark(), gw.proc.mark()
    fwd.cut()
    agent.proc.wait_log(r"gateway connection closed: connection lost: ", after=amark)
    gw.proc.wait_log(r"agent=blip disconnected from .*connection lost", after=gmark)
    print(f"  held connection ended by {ends(held, h.EVENT_TIMEOUT)}", flush=True)
    held.close()
    h.check_eq(agent.wait_tunnel(f"tcp-{fixed}", after=amark), fixed, "fixed port after reconnecting")
    h.echo_round_trip(fixed)
    h.check_eq(fwd.connections, 2, "connections through the relay (one per session)")


@h.case("port0_tunnel_keeps_its_port_across_reconnect")
def port0(env):
    srv = env.echo_server(tolerate_reset=True)
    gw = env.gateway()
    fwd = h.Forwarder(env, ("127.0.0.1", gw.port))
    agent = env.agent(gw, [f"tcp:0:127.0.0.1:{srv.port}"], name="blip0",
                      url=f"wss://localhost:{fwd.port}")
    name = h.tunnel_name(srv.port)
    first = agent.wait_tunnel(name)
    amark = agent.proc.mark()
    fwd.cut()
    again = agent.wait_tunnel(name, after=amark)
    h.echo_round_trip(again)
    h.check_eq(again, first, "public port of the remote_port 0 tunnel after a reconnect")


@h.case("silent_network_heartbeat_timeout")
def silent(env):
    srv = env.echo_server(tolerate_reset=True)
    gw = env.gateway(config=lambda p: h.gateway_toml(
        env, p, limits="heartbeat_interval_ms = 300\nheartbeat_timeout_ms = 2000\n"
                       "handshake_timeout_ms = 2000"))
    fwd = h.Forwarder(env, ("127.0.0.1", gw.port))
    fixed = h.pick_port()
    tok = env.write("agent.token", h.TOKEN + "\n", 0o600)
    agent = env.agent(name="quiet", config=f"""[agent]
name = "quiet"
gateway = "wss://localhost:{fwd.port}"
token_file = "{tok}"
ca = "{gw.cert}"

[reconnect]
initial_ms = 100
max_ms = 500

[limits]
heartbeat_timeout_ms = 2000
handshake_timeout_ms = 2000

[[tunnel]]
name = "t"
protocol = "tcp"
remote_port = {fixed}
local = "127.0.0.1:{srv.port}"
""")
    h.check_eq(agent.wait_tunnel("t"), fixed, "fixed port")
    held = open_conn(fixed)
    amark, gmark = agent.proc.mark(), gw.proc.mark()
    fwd.freeze()
    agent.proc.wait_log(r"gateway connection closed: nothing from the gateway for \d+ ms "
                        r"\(heartbeat_timeout\) \(4004\)$", after=amark)
    h.check_eq(agent.wait_tunnel("t", after=amark), fixed, "fixed port after reconnecting")
    h.echo_round_trip(fixed)
    m = gw.proc.wait_log(r"agent=quiet disconnected from .*\((4004|4003)\)$", after=gmark)
    print(f"  the old session ended on the gateway with {m.group(1)}", flush=True)
    print(f"  held connection ended by {ends(held, h.EVENT_TIMEOUT)}", flush=True)
    held.close()
    h.echo_round_trip(fixed)
    h.check(gw.proc.alive() and agent.proc.alive(), "both programs still running")


if __name__ == "__main__":
    raise SystemExit(h.main())
