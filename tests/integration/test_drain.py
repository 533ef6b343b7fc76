#!/usr/bin/python3
"""14. SIGTERM drains the gateway.

With a transfer in flight: the gateway stops accepting at once (the
tunnel's port refuses new connections), tells the agent goodbye (the agent
logs it), lets the running transfer finish byte-exact, and exits 0 once it
has. A transfer that never ends is cut when drain_timeout_ms runs out, and
the gateway exits within drain_timeout_ms + handshake_timeout_ms + a
margin (a deadline, not a measure of speed)."""
import hashlib
import signal
import socket
import threading

import harness as h

MARGIN_S = 15 * h.SLOW


def source_handler(total):
    def handler(conn, idx):
        if total is None:  # forever, until the connection breaks (expected)
            seed = 0
            try:
                while True:
                    h.send_pattern(conn, 500 + seed, 4 * h.MiB)
                    seed += 1
            except (ConnectionResetError, BrokenPipeError):
                return
        h.send_pattern(conn, 51, total)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)
    return handler


def setup(env, drain_ms, handshake_ms, total):
    srv = env.server(source_handler(total), "source")
    gw = env.gateway(config=lambda p: h.gateway_toml(
        env, p, limits=f"drain_timeout_ms = {drain_ms}\nhandshake_timeout_ms = {handshake_ms}"))
    agent = env.agent(gw, [f"tcp:0:127.0.0.1:{srv.port}"])
    port = agent.wait_tunnel(h.tunnel_name(srv.port))
    return gw, agent, port


def sigterm_checks(gw, agent, port, drain_ms):
    gmark, amark = gw.proc.mark(), agent.proc.mark()
    gw.proc.signal(signal.SIGTERM)
    gw.proc.wait_log(r"draining: no new connections; 1 agent\(s\) told to leave within %d ms$"
                     % drain_ms, after=gmark)
    h.wait_for(lambda: h.connection_refused(port), h.EVENT_TIMEOUT,
               "the tunnel port to refuse new connections")
    agent.proc.wait_log(r"gateway says goodbye: gateway is shutting down; reconnecting when it "
                        r"closes$", after=amark)
    return amark


@h.case("sigterm_lets_running_transfer_finish")
def drain_finishes(env):
    drain_ms = 30000 * h.SLOW
    total = h.scaled(64 * h.MiB, 8 * h.MiB)
    gw, agent, port = setup(env, drain_ms, 10000, total)
    c = h.connect(port)
    hasher = hashlib.sha256()
    first = h.recv_exact(c, 1 * h.MiB)  # the transfer is running...
    hasher.update(first)
    amark = sigterm_checks(gw, agent, port, drain_ms)  # ...and we pause reading meanwhile
    n, _ = 0, None
    while True:
        b = c.recv(256 * h.KiB)
        if not b:
            break
        hasher.update(b)
        n += len(b)
    c.close()
    h.check_eq(len(first) + n, total, "bytes received across the drain")
    h.check_eq(hasher.hexdigest(), h.pattern().digest(51, total), "sha256 across the drain")
    rc = gw.proc.wait_exit(drain_ms / 1000 + MARGIN_S, "drain after the last stream ended")
    h.check_eq(rc, 0, "gateway exit status after draining")
    gw.proc.wait_log(r"gateway stopped$")
    h.check(not gw.proc.find(r"drain timeout"), "the drain did not need its timeout")
    agent.proc.wait_log(r"gateway connection closed: .*\(1001\)$", after=amark)
    agent.proc.wait_log(r"reconnecting in \d+ ms$", after=amark)


@h.case("sigterm_cuts_endless_transfer_at_drain_timeout")
def drain_deadline(env):
    drain_ms, handshake_ms = 2000, 2000
    gw, agent, port = setup(env, drain_ms, handshake_ms, None)
    c = h.connect(port)
    got = [0]
    ended = {}

    def reader():
        try:
            while True:
                b = c.recv(256 * h.KiB)
                if not b:
                    ended["how"] = "eof"
                    return
                got[0] += len(b)
        except ConnectionResetError:
            ended["how"] = "rst"
        except OSError as e:
            ended["how"] = repr(e)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    h.wait_for(lambda: got[0] >= 4 * h.MiB, h.EVENT_TIMEOUT, "the endless transfer to run")
    amark = sigterm_checks(gw, agent, port, drain_ms)
    before = got[0]
    rc = gw.proc.wait_exit((drain_ms + handshake_ms) / 1000 + MARGIN_S,
                           "drain_timeout_ms + handshake_timeout_ms + margin")
    h.check_eq(rc, 0, "gateway exit status after the drain timeout")
    t.join(h.EVENT_TIMEOUT)
    h.check(not t.is_alive(), "the public connection ended with the gateway")
    h.check(got[0] > before, "the transfer kept running during the drain")
    print(f"  endless transfer ended by {ended.get('how')} after {got[0] / h.MiB:.0f} MiB", flush=True)
    c.close()
    agent.proc.wait_log(r"gateway connection closed: ", after=amark)


if __name__ == "__main__":
    raise SystemExit(h.main())
