#!/usr/bin/python3
"""7. The gateway goes away and comes back on the same port with the same
certificate (self-signed, saved to --cert/--key on first start and reused):
after SIGTERM (drain, Goodbye) and after SIGKILL (connection lost). The
agent, left alone, reconnects with its backoff within a deadline, registers
its tunnel again on the same public port, and the tunnel carries data."""
import harness as h


@h.case("gateway_sigterm_and_sigkill_restart")
def restart(env):
    srv = env.echo_server()
    cert, key = env.path("gw-cert.pem"), env.path("gw-key.pem")
    gw = env.gateway(cert=cert, key=key)
    with open(cert, "rb") as f:
        cert_bytes = f.read()
    tport = h.pick_port()
    agent = env.agent(gw, [f"tcp:{tport}:127.0.0.1:{srv.port}"], ca=cert)
    tunnel = f"tcp-{tport}"
    h.check_eq(agent.wait_tunnel(tunnel), tport, "public port")
    h.echo_round_trip(tport, b"before\n")

    for how in ("SIGTERM", "SIGKILL"):
        mark = agent.proc.mark()
        if how == "SIGTERM":
            rc, killed = gw.proc.stop()
            h.check(not killed and rc == 0, f"gateway exit on SIGTERM: status {rc}, killed {killed}")
            agent.proc.wait_log(r"gateway says goodbye: gateway is shutting down", after=mark)
        else:
            gw.proc.kill9()
        agent.proc.wait_log(r"gateway connection closed: ", after=mark)
        agent.proc.wait_log(r"reconnecting in \d+ ms", after=mark)
        h.wait_for(lambda: h.connection_refused(tport), h.EVENT_TIMEOUT,
                   "the public port to be gone with the gateway")

        gw = env.gateway(cert=cert, key=key, port=gw.port)
        h.check(not gw.proc.find(r"self-signed certificate sha256 fingerprint"),
                "the restarted gateway reused the saved certificate instead of making one")
        with open(cert, "rb") as f:
            h.check_eq(f.read(), cert_bytes, f"certificate file after the {how} restart")
        # Default backoff: 1 s doubling to 30 s, so well within 60 s.
        h.check_eq(agent.wait_tunnel(tunnel, timeout=60 * h.SLOW, after=mark), tport,
                   f"public port after the {how} restart")
        h.echo_round_trip(tport, f"after {how}\n".encode())
        print(f"  reconnected after {how}", flush=True)
    h.check(agent.proc.alive(), "the agent kept running throughout")


if __name__ == "__main__":
    raise SystemExit(h.main())
