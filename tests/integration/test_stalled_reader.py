#!/usr/bin/python3
"""5. A stalled reader stalls only its own stream.

Stream A: the local server writes A_TOTAL bytes; A's client reads nothing.
Stream B, on the same tunnel (same WebSocket), then moves B_SIZE bytes each
way byte-exact. When B is done, A's server must still be blocked short of
A_TOTAL (A_TOTAL is far above every window, watermark and socket buffer on
the path, so this shows backpressure reached A's source instead of memory
growing). Then A's client reads: every byte arrives, in order."""
import socket
import threading

import harness as h

A_TOTAL = 64 * h.MiB  # not scaled: must dwarf the buffers on the path
B_SIZE = h.scaled(64 * h.MiB, 4 * h.MiB)


@h.case("stalled_reader_does_not_stall_others")
def stalled(env):
    a_progress = [0]
    a_done = threading.Event()
    state = {}

    def handler(conn, idx):
        first = h.recv_exact(conn, 1)
        if first == b"A":
            state["a_sent"] = h.send_pattern(conn, 41, A_TOTAL, a_progress)
            a_done.set()
            conn.shutdown(socket.SHUT_WR)
            conn.recv(1)
        else:  # B: echo, the selector byte included
            conn.sendall(first)
            h.echo_handler(conn, idx)

    srv = env.server(handler, "a-writer-b-echo")
    gw = env.gateway()
    agent = env.agent(gw, [f"tcp:0:127.0.0.1:{srv.port}"])
    port = agent.wait_tunnel(h.tunnel_name(srv.port))

    a = h.connect(port)
    a.sendall(b"A")
    # A flows until the path's buffers are full; we read nothing.
    h.wait_for(lambda: a_progress[0] >= 1 * h.MiB, h.EVENT_TIMEOUT,
               "stream A's server to have written 1 MiB")

    b = h.connect(port)
    b.sendall(b"B")
    h.check_eq(h.recv_exact(b, 1), b"B", "B's first byte echoed")
    out = {}

    def sender():
        out["sent"] = h.send_pattern(b, 42, B_SIZE)
        b.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=sender)
    t.start()
    n, digest = h.recv_hash(b)
    t.join(h.IO_TIMEOUT)
    b.close()
    h.check_eq(n, B_SIZE, "stream B: bytes echoed while A is stalled")
    h.check_eq(digest, out["sent"], "stream B: sha256 of the echo")

    a_at_b_done = a_progress[0]
    h.check(not a_done.is_set() and a_at_b_done < A_TOTAL,
            f"stream A's source was not held back: it wrote {a_at_b_done} of {A_TOTAL} bytes "
            f"while nobody read stream A")
    print(f"  while stalled, A's server had written {a_at_b_done / h.MiB:.1f} MiB of "
          f"{A_TOTAL / h.MiB:.0f} MiB", flush=True)

    # A resumes: all of it, in order.
    n, digest = h.recv_hash(a)
    a.close()
    h.check_eq(n, A_TOTAL, "stream A: bytes received after resuming")
    h.check(a_done.wait(h.EVENT_TIMEOUT), "A's server finished writing")
    h.check_eq(digest, state["a_sent"], "stream A: sha256 after resuming")


@h.case("stalled_target_does_not_stall_others")
def stalled_target(env):
    """The other direction: A's local target stops reading while A's public
    client keeps writing; backpressure must reach A's client (its writes
    block short of A_TOTAL) while B moves its bytes; then the target reads
    everything, in order."""
    release = threading.Event()
    got = {}

    def handler(conn, idx):
        first = h.recv_exact(conn, 1)
        if first == b"A":
            if not release.wait(h.IO_TIMEOUT * 3):
                raise AssertionError("never released")
            got["a"] = h.recv_hash(conn)
        else:
            conn.sendall(first)
            h.echo_handler(conn, idx)

    srv = env.server(handler, "a-stalled-b-echo")
    gw = env.gateway()
    agent = env.agent(gw, [f"tcp:0:127.0.0.1:{srv.port}"])
    port = agent.wait_tunnel(h.tunnel_name(srv.port))

    a = h.connect(port)
    a.sendall(b"A")
    a_progress = [0]
    a_state = {}

    def a_writer():
        a_state["sent"] = h.send_pattern(a, 43, A_TOTAL, a_progress)
        a.shutdown(socket.SHUT_WR)

    ta = threading.Thread(target=a_writer)
    ta.start()
    h.wait_for(lambda: a_progress[0] >= 1 * h.MiB, h.EVENT_TIMEOUT,
               "stream A's client to have written 1 MiB")

    b = h.connect(port)
    b.sendall(b"B")
    h.check_eq(h.recv_exact(b, 1), b"B", "B's first byte echoed")
    out = {}

    def sender():
        out["sent"] = h.send_pattern(b, 44, B_SIZE)
        b.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=sender)
    t.start()
    n, digest = h.recv_hash(b)
    t.join(h.IO_TIMEOUT)
    b.close()
    h.check_eq((n, digest), (B_SIZE, out.get("sent")), "stream B: echo while A's target is stalled")
    a_at_b_done = a_progress[0]
    h.check(ta.is_alive() and a_at_b_done < A_TOTAL,
            f"stream A's client was not held back: it wrote {a_at_b_done} of {A_TOTAL} bytes "
            f"while its target read nothing")
    print(f"  while stalled, A's client had written {a_at_b_done / h.MiB:.1f} MiB of "
          f"{A_TOTAL / h.MiB:.0f} MiB", flush=True)

    release.set()
    ta.join(h.IO_TIMEOUT * 3)
    h.check(not ta.is_alive(), "A's client finished writing after the target resumed")
    h.wait_for(lambda: "a" in got or srv.errors, h.EVENT_TIMEOUT, "A's target to read everything")
    h.check(not srv.errors, f"server errors: {srv.errors}")
    h.check_eq(got["a"], (A_TOTAL, a_state["sent"]), "stream A: what the target received")
    a.close()


if __name__ == "__main__":
    raise SystemExit(h.main())
