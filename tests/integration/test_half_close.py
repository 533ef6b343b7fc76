#!/usr/bin/python3
"""4. Half-close through a tunnel, both ways round.

Client first: the client sends, shuts its write side and only then does the
server answer; the answer must arrive, followed by EOF (FIN, not RST):
`nc -N` and `socat` against `socat ... EXEC:'wc -c'`, and Python sockets.
Server first: the server sends and shuts its write side while it still
reads; the client sees all of it and EOF, then sends its own data, which the
server must receive in full.

Reset is not a half-close: an RST from either end reaches the other end as
an RST (ConnectionResetError), not as a clean EOF."""
import socket
import struct
import subprocess
import threading

import harness as h


def start_socat_wc(env):
    for _ in range(10):
        port = h.pick_port()
        p = env.start("socat-wc", ["socat", "-d", "-d", "-t", "30",
                                   f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
                                   "EXEC:wc -c"])
        try:
            p.wait_log(r"listening on .*:%d" % port, h.START_TIMEOUT)
            return port
        except h.Failure:
            if p.alive():
                raise
    raise h.Failure("could not start socat on a free port")


def tunnel_to(env, gw, local_port, name):
    a = env.agent(gw, [f"tcp:0:127.0.0.1:{local_port}"], name=name)
    return a.wait_tunnel(h.tunnel_name(local_port))


@h.case("nc_and_socat_clients_against_wc")
def nc_socat(env):
    wc_port = start_socat_wc(env)
    gw = env.gateway()
    port = tunnel_to(env, gw, wc_port, "agent")
    size = h.scaled(3 * h.MiB, 256 * h.KiB) + 7
    payload = env.path("payload.bin")
    with open(payload, "wb") as f:
        f.write(h.pattern().bytes(3, size))

    # nc -N: shutdown(SHUT_WR) after stdin's EOF, then read until the
    # server's EOF. wc answers only after it has seen EOF.
    with open(payload, "rb") as f:
        r = subprocess.run(["nc", "-N", "-w", str(h.IO_TIMEOUT), "127.0.0.1", str(port)],
                           stdin=f, capture_output=True, timeout=h.IO_TIMEOUT + 10)
    h.check_eq(r.returncode, 0, f"nc -N exit status (stderr {r.stderr!r})")
    h.check_eq(r.stdout.strip(), str(size).encode(), "wc -c answer via nc -N")

    # socat: half-closes after stdin's EOF and waits up to -t for the rest.
    with open(payload, "rb") as f:
        r = subprocess.run(["socat", "-t", "30", "-", f"TCP:127.0.0.1:{port}"],
                           stdin=f, capture_output=True, timeout=h.IO_TIMEOUT + 10)
    h.check_eq(r.returncode, 0, f"socat exit status (stderr {r.stderr!r})")
    h.check_eq(r.stdout.strip(), str(size).encode(), "wc -c answer via socat")

    # Empty upload: EOF first, nothing else.
    r = subprocess.run(["nc", "-N", "-w", str(h.IO_TIMEOUT), "127.0.0.1", str(port)],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=h.IO_TIMEOUT + 10)
    h.check_eq(r.returncode, 0, "nc -N with empty input: exit status")
    h.check_eq(r.stdout.strip(), b"0", "wc -c answer for an empty upload")


@h.case("client_half_closes_first")
def client_first(env):
    def handler(conn, idx):
        n, digest = h.recv_hash(conn)  # everything, up to the client's FIN
        conn.sendall(f"{n} {digest}\n".encode())
        conn.shutdown(socket.SHUT_WR)
        rest = conn.recv(1)  # the client closes after our FIN
        if rest:
            raise AssertionError("data after the client's FIN")

    srv = env.server(handler, "reply-after-eof")
    gw = env.gateway()
    port = tunnel_to(env, gw, srv.port, "agent")
    for seed, size in ((11, 0), (12, 1), (13, h.scaled(8 * h.MiB, 1 * h.MiB))):
        s = h.connect(port)
        sent = h.send_pattern(s, seed, size)
        s.shutdown(socket.SHUT_WR)
        reply = h.recv_all(s, limit=200)  # raises ConnectionResetError on RST
        s.close()
        h.check_eq(reply.decode(), f"{size} {sent}\n",
                   f"reply after half-close ({size} bytes), then EOF")


@h.case("echo_then_half_close")
def echo_half_close(env):
    srv = env.echo_server()
    gw = env.gateway()
    port = tunnel_to(env, gw, srv.port, "agent")
    size = h.scaled(16 * h.MiB, 1 * h.MiB)
    s = h.connect(port)
    import threading
    out = {}

    def sender():
        out["sent"] = h.send_pattern(s, 21, size)
        s.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=sender)
    t.start()
    n, digest = h.recv_hash(s)
    t.join(h.IO_TIMEOUT)
    s.close()
    h.check_eq(n, size, "bytes echoed before EOF")
    h.check_eq(digest, out["sent"], "sha256 of the echo")


@h.case("server_half_closes_first")
def server_first(env):
    size_down = h.scaled(4 * h.MiB, 512 * h.KiB) + 3
    size_up = h.scaled(4 * h.MiB, 512 * h.KiB) + 5
    got = {}

    def handler(conn, idx):
        got["sent"] = h.send_pattern(conn, 31, size_down)
        conn.shutdown(socket.SHUT_WR)   # our side is done; keep reading
        got["recv"] = h.recv_hash(conn)

    srv = env.server(handler, "server-first")
    gw = env.gateway()
    port = tunnel_to(env, gw, srv.port, "agent")
    s = h.connect(port)
    n, digest = h.recv_hash(s)  # all of the server's bytes, then its FIN
    h.check_eq(n, size_down, "bytes from the server before its EOF")
    h.check_eq(digest, h.pattern().digest(31, size_down), "sha256 of the server's bytes")
    # The stream is half-closed, not closed: our direction still works.
    sent = h.send_pattern(s, 32, size_up)
    s.shutdown(socket.SHUT_WR)
    h.check_eq(s.recv(1), b"", "EOF again after our FIN")
    s.close()
    h.wait_for(lambda: "recv" in got or srv.errors, h.EVENT_TIMEOUT, "the server to finish")
    h.check(not srv.errors, f"server errors: {srv.errors}")
    h.check_eq(got["recv"], (size_up, sent), "what the server received after its own FIN")


def rst_close(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def how_it_ends(sock):
    try:
        while sock.recv(65536):
            pass
        return "eof"
    except ConnectionResetError:
        return "rst"


@h.case("reset_propagates_both_ways")
def resets(env):
    seen = {}
    got_abort = threading.Event()

    def handler(conn, idx):
        what = h.recv_exact(conn, 5)
        if what == b"reset":      # the target aborts
            rst_close(conn)
            return
        got_abort.set()          # the client will abort
        seen["target"] = how_it_ends(conn)

    srv = env.server(handler, "resetter", tolerate_reset=True)
    gw = env.gateway()
    # A host name as the local target (resolved by the agent).
    a = env.agent(gw, [f"tcp:0:localhost:{srv.port}"], name="agent")
    port = a.wait_tunnel(f"tcp-localhost-{srv.port}")

    c = h.connect(port)
    c.sendall(b"reset")
    h.check_eq(how_it_ends(c), "rst", "the public client sees the target's RST")
    c.close()

    c = h.connect(port)
    c.sendall(b"abort")
    h.check(got_abort.wait(h.EVENT_TIMEOUT), "the target got the bytes before the abort")
    rst_close(c)
    h.wait_for(lambda: "target" in seen, h.EVENT_TIMEOUT, "the target to see the end")
    h.check_eq(seen["target"], "rst", "the target sees the public client's RST")
    h.check(not a.proc.find(r"gateway connection closed"), "the session was not affected")


if __name__ == "__main__":
    raise SystemExit(h.main())
