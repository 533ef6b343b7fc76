#!/usr/bin/python3
"""6. The agent dies (kill -9) with connections open.

Every open public connection must end promptly (EOF or RST, within a
deadline), the tunnel's public port must refuse new connections, and
another agent name must not be able to take the port (it stays reserved for
the agent that held it). A restarted agent asking for the same port gets it
back and the tunnel works again."""
import socket

import harness as h

OPEN_CONNECTIONS = 8


def round_trip(port, payload):
    s = h.connect(port)
    s.sendall(payload)
    got = h.recv_exact(s, len(payload))
    h.check_eq(got, payload, "echo through the tunnel")
    return s


def ended(sock, timeout):
    """'eof' or 'rst' once the connection ends; fails on the deadline."""
    sock.settimeout(timeout)
    try:
        while True:
            b = sock.recv(65536)
            if not b:
                return "eof"
    except ConnectionResetError:
        return "rst"
    except socket.timeout:
        raise h.Failure(f"a public connection was still open {timeout} s after the agent died")


@h.case("agent_kill9_with_open_connections")
def agent_kill(env):
    srv = env.echo_server(tolerate_reset=True)
    gw = env.gateway()
    agent = env.agent(gw, [f"tcp:0:127.0.0.1:{srv.port}"], name="victim")
    port = agent.wait_tunnel(h.tunnel_name(srv.port))

    conns = [round_trip(port, f"hello {i}\n".encode()) for i in range(OPEN_CONNECTIONS)]
    mark = gw.proc.mark()
    agent.proc.kill9()

    how = [ended(c, h.EVENT_TIMEOUT) for c in conns]
    for c in conns:
        c.close()
    print(f"  connections ended by: {sorted(set(how))}", flush=True)
    gw.proc.wait_log(r"agent=victim disconnected from ", after=mark)
    h.wait_for(lambda: h.connection_refused(port), h.EVENT_TIMEOUT,
               f"public port {port} to refuse connections")

    # The port stays reserved for "victim": another name cannot take it.
    intruder = env.agent(gw, [f"tcp:{port}:127.0.0.1:{srv.port}"], name="intruder")
    intruder.proc.wait_log(r"tunnel tcp-%d refused by the gateway: public port %d is reserved "
                           r"for another agent .*\(port_unavailable\)" % (port, port))
    h.check(h.connection_refused(port), "the refused tunnel did not open the port")
    intruder.proc.stop()

    # The same agent, restarted, gets its port back.
    again = env.agent(gw, [f"tcp:{port}:127.0.0.1:{srv.port}"], name="victim")
    h.check_eq(again.wait_tunnel(f"tcp-{port}"), port, "the restarted agent's public port")
    for i in range(3):
        h.echo_round_trip(port, f"again {i}\n".encode())
    h.check(gw.proc.alive(), "the gateway is still running")


if __name__ == "__main__":
    raise SystemExit(h.main())
