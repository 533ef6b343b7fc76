#!/usr/bin/python3
"""16. Many connections at once through one tunnel: N (500) public
connections are opened and held open together, each sends its own message,
and each gets exactly its own message back; then all close cleanly. A
second round opens them as fast as possible from many threads at once
(max_pending_opens raised so that the documented limit is not what is
tested). Then many agents at once on one gateway, each with its own tunnel
to its own target, all reachable concurrently."""
import socket
import threading

import harness as h

N = 500


def round_trips(port, n, tag):
    socks = []
    try:
        for i in range(n):
            socks.append(h.connect(port))
        for i, s in enumerate(socks):
            s.sendall(f"{tag} connection {i:04d} says hello\n".encode())
        for i, s in enumerate(socks):
            want = f"{tag} connection {i:04d} says hello\n".encode()
            h.check_eq(h.recv_exact(s, len(want)), want, f"{tag}: echo on connection {i}")
        for s in socks:
            s.shutdown(socket.SHUT_WR)
        for i, s in enumerate(socks):
            h.check_eq(s.recv(1), b"", f"{tag}: EOF after the echo on connection {i}")
    finally:
        for s in socks:
            s.close()


@h.case("many_concurrent_connections")
def many(env):
    srv = env.echo_server(backlog=4096)
    gw = env.gateway(config=lambda p: h.gateway_toml(env, p, limits="max_pending_opens = 4096"))
    agent = env.agent(gw, [f"tcp:0:127.0.0.1:{srv.port}"])
    port = agent.wait_tunnel(h.tunnel_name(srv.port))
    round_trips(port, N, "held")
    h.check_eq(srv.accepted, N, "connections the local server accepted")

    # All at once: 20 threads opening N/20 connections each, each holding
    # its connections open until all threads have their echoes.
    errors = []
    barrier = threading.Barrier(20)

    def burst(k):
        socks = []
        try:
            for i in range(N // 20):
                socks.append(h.connect(port))
            for i, s in enumerate(socks):
                s.sendall(f"burst {k}/{i}\n".encode())
            for i, s in enumerate(socks):
                want = f"burst {k}/{i}\n".encode()
                got = h.recv_exact(s, len(want))
                if got != want:
                    errors.append(f"burst {k}/{i}: got {got!r}")
            barrier.wait(h.IO_TIMEOUT)
        except Exception as e:
            errors.append(f"burst {k}: {e!r}")
            barrier.abort()
        finally:
            for s in socks:
                s.close()

    threads = [threading.Thread(target=burst, args=(k,)) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(h.IO_TIMEOUT * 2)
    h.check(not errors, f"errors in the burst: {errors[:5]} ({len(errors)} in all)")
    h.check(not agent.proc.find(r"gateway connection closed"), "the agent stayed connected")
    h.check(not gw.proc.find(r"refusing connection"), "the gateway refused no connection")


AGENTS = 10 if h.SANITIZED else 20


def banner_handler(name):
    def handler(conn, idx):
        conn.sendall(f"{name}\n".encode())
        h.echo_handler(conn, idx)
    return handler


@h.case("many_agents_on_one_gateway")
def many_agents(env):
    gw = env.gateway()
    servers = [env.server(banner_handler(f"target{i}"), f"target{i}") for i in range(AGENTS)]
    agents = [env.agent(gw, [f"tcp:0:127.0.0.1:{srv.port}"], name=f"agent{i}", wait_connected=False)
              for i, srv in enumerate(servers)]
    ports = [a.wait_tunnel(h.tunnel_name(srv.port), timeout=h.START_TIMEOUT * 2)
             for a, srv in zip(agents, servers)]
    h.check_eq(len(set(ports)), AGENTS, "distinct public ports")
    errors = []

    def visit(i):
        try:
            s = h.connect(ports[i])
            want = f"target{i}\n".encode()
            h.check_eq(h.recv_exact(s, len(want)), want, f"agent{i}'s port reaches its target")
            payload = f"payload for {i}".encode() * 1000
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            h.check_eq(h.recv_all(s), payload, f"echo via agent{i}")
            s.close()
        except Exception as e:
            errors.append(f"agent{i}: {e!r}")

    threads = [threading.Thread(target=visit, args=(i,)) for i in range(AGENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(h.IO_TIMEOUT)
    h.check(not errors, f"errors: {errors}")
    h.check_eq(len(gw.proc.findall(r"agent=agent\d+ connected from ")), AGENTS,
               "agent sessions on the gateway (one each, no flapping)")


if __name__ == "__main__":
    raise SystemExit(h.main())
