#!/usr/bin/python3
"""IPv6 on loopback end to end: the gateway listens on [::1] and binds
tunnel ports on ::1, the agent dials wss://[::1]:PORT (the self-signed
certificate names ::1) and its tunnel targets [::1]:PORT; data crosses
byte-exact, and the addresses are printed in [v6]:port form."""
import socket
import threading

import harness as h


def v6_echo_server(env):
    return env.server(h.echo_handler, "echo6", host="::1")


@h.case("ipv6_everywhere")
def ipv6(env):
    if not h.port_free(0, "::1"):
        raise h.Failure("no IPv6 loopback on this machine")
    srv = v6_echo_server(env)
    gw = env.gateway(host="::1", public_bind="::1")
    gw.proc.wait_log(r"listening on \[::1\]:%d \(wss\)" % gw.port)
    agent = env.agent(gw, [f"tcp:0:[::1]:{srv.port}"], name="six")
    m = agent.proc.wait_log(r"tunnel (\S+) is open at \[::1\]:(\d+)$")
    port = int(m.group(2))
    gw.proc.wait_log(r"agent=six connected from \[::1\]:\d+ ")
    size = h.scaled(8 * h.MiB, 1 * h.MiB)
    s = socket.create_connection(("::1", port), timeout=h.IO_TIMEOUT)
    out = {}

    def sender():
        out["sent"] = h.send_pattern(s, 66, size)
        s.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=sender)
    t.start()
    n, digest = h.recv_hash(s)
    t.join(h.IO_TIMEOUT)
    s.close()
    h.check_eq((n, digest), (size, out.get("sent")), "echo over IPv6 through the tunnel")
    h.check(srv.accepted == 1, "the IPv6 target was reached")


if __name__ == "__main__":
    raise SystemExit(h.main())
