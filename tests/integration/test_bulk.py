#!/usr/bin/python3
"""3. Byte-exact bulk transfer in both directions at once over many
concurrent streams of one tunnel: STREAMS connections each send SIZE bytes
to a local server while the server sends SIZE other bytes back (64 x 16 MiB
= 1 GiB each way at scale 1). Both ends hash what they send and what they
receive; every stream's four hashes and counts must match.

Each connection starts with a 12-byte header (seed u32, size u64) so the
server knows which pattern to send."""
import socket
import struct
import threading

import harness as h

STREAMS = 64
SIZE = h.scaled(16 * h.MiB, 256 * h.KiB)
SERVER_SEED = 1_000_000


@h.case("bulk_both_directions_many_streams")
def bulk(env):
    server_results = {}
    lock = threading.Lock()

    def handler(conn, idx):
        seed, size = struct.unpack(">IQ", h.recv_exact(conn, 12))
        out = {}

        def sender():
            out["sent"] = h.send_pattern(conn, SERVER_SEED + seed, size)
            conn.shutdown(socket.SHUT_WR)

        t = threading.Thread(target=sender)
        t.start()
        n, digest = h.recv_hash(conn)
        t.join(h.IO_TIMEOUT)
        with lock:
            server_results[seed] = (n, digest, out.get("sent"))

    srv = env.server(handler, "sink-source")
    gw = env.gateway()
    agent = env.agent(gw, [f"tcp:0:127.0.0.1:{srv.port}"])
    port = agent.wait_tunnel(h.tunnel_name(srv.port))

    client_results = {}
    errors = []

    def client(seed):
        try:
            s = h.connect(port)
            s.sendall(struct.pack(">IQ", seed, SIZE))
            out = {}

            def sender():
                out["sent"] = h.send_pattern(s, seed, SIZE)
                s.shutdown(socket.SHUT_WR)

            t = threading.Thread(target=sender)
            t.start()
            n, digest = h.recv_hash(s)
            t.join(h.IO_TIMEOUT)
            s.close()
            with lock:
                client_results[seed] = (n, digest, out.get("sent"))
        except Exception as e:
            with lock:
                errors.append(f"stream {seed}: {e!r}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(STREAMS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(h.IO_TIMEOUT * 10)
        h.check(not t.is_alive(), "a bulk stream is still running after its deadline")
    h.check(not errors, f"client errors: {errors[:5]}")
    h.wait_for(lambda: len(server_results) == STREAMS, h.EVENT_TIMEOUT,
               "the server to finish every stream")
    expect_up = h.pattern().digest(0, SIZE)  # spot check: the generator itself
    h.check_eq(client_results[0][2], expect_up, "stream 0 sent the pattern")
    for seed in range(STREAMS):
        cn, cdigest, csent = client_results[seed]
        sn, sdigest, ssent = server_results[seed]
        h.check_eq(sn, SIZE, f"stream {seed}: bytes the server received")
        h.check_eq(sdigest, csent, f"stream {seed}: sha256 client->server")
        h.check_eq(cn, SIZE, f"stream {seed}: bytes the client received")
        h.check_eq(cdigest, ssent, f"stream {seed}: sha256 server->client")
    print(f"  {STREAMS} streams x {SIZE} bytes each way: "
          f"{STREAMS * SIZE / h.MiB:.0f} MiB up and down, all hashes match", flush=True)
    h.check(not agent.proc.find(r"gateway connection closed"), "the agent stayed connected")


if __name__ == "__main__":
    raise SystemExit(h.main())
