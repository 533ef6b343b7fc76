#!/usr/bin/python3
"""8. Wrong token, and the rate limit on failed authentications.

A real agent with a wrong token: it logs the refusal (bad_token) and keeps
retrying, the gateway logs `auth failed ... wrong token`, no tunnel is ever
registered. A raw client from 127.0.0.5 fails failure_burst (10) times:
each gets AuthError{bad_token} and close 4002; its next connection is closed
before TLS (RST; the gateway's debug log names that exact source port),
while other source addresses (127.0.0.6, and the real agent on 127.0.0.1)
are served as before."""
import asyncio
import socket
import ssl

import harness as h

BURST = 10  # [auth] failure_burst default


@h.case("agent_with_wrong_token")
def wrong_token(env):
    srv = env.echo_server()
    gw = env.gateway()
    agent = env.agent(gw, [f"tcp:0:127.0.0.1:{srv.port}"], name="badtoken", token="not-the-token",
                      wait_connected=False)
    agent.proc.wait_count(r"gateway refused authentication: authentication failed \(bad_token\)",
                          2, timeout=30 * h.SLOW, what="two refusals (it retries)")
    gw.proc.wait_log(r'auth failed from 127\.0\.0\.1:\d+ \(agent "badtoken"\): wrong token$')
    h.check(not agent.proc.find(r"is open at|connected to gateway as"), "no tunnel, no session")
    h.check(not gw.proc.find(r"registered at|agent=badtoken connected"),
            "the gateway registered nothing for the agent")
    h.check(agent.proc.alive(), "the agent keeps retrying")


async def failed_auths(gw, source, n):
    for i in range(n):
        ws = await h.ws_connect(gw, local_addr=source)
        await ws.send(h.auth_msg(token="wrong", agent=f"guess{i}"))
        code, reason, seen = await h.ws_closed(ws)
        h.check_eq(code, 4002, f"close code of wrong-token attempt {i}")
        errs = [m for m in seen if m.get("type") == "AuthError"]
        h.check(errs and errs[0].get("code") == "bad_token",
                f"attempt {i}: AuthError bad_token before the close (got {seen})")


async def good_auth(gw, source, name):
    ws = await h.ws_connect(gw, local_addr=source)
    await ws.send(h.auth_msg(agent=name))
    ok = await h.ws_until(ws, lambda m: m.get("type") in ("AuthOk", "AuthError"))
    await ws.close()
    return ok


@h.case("failed_auth_rate_limit_per_address")
def rate_limit(env):
    srv = env.echo_server()
    gw = env.gateway(log_level="debug")
    asyncio.run(failed_auths(gw, "127.0.0.5", BURST))
    gw.proc.wait_count(r'auth failed from 127\.0\.0\.5:\d+ \(agent "guess\d+"\): wrong token$', BURST)

    # Out of tokens: refused before TLS.
    s = socket.socket()
    s.bind(("127.0.0.5", 0))
    sport = s.getsockname()[1]
    s.settimeout(h.EVENT_TIMEOUT)
    try:
        s.connect(("127.0.0.1", gw.port))  # the RST may already beat connect() back
        tls = h.client_ssl().wrap_socket(s)
        tls.close()
        raise h.Failure("the 11th connection from 127.0.0.5 completed a TLS handshake")
    except (ConnectionResetError, ssl.SSLError, ConnectionAbortedError, BrokenPipeError) as e:
        print(f"  11th connection: {e!r}", flush=True)
    finally:
        s.close()
    gw.proc.wait_log(r"refusing 127\.0\.0\.5:%d: too many failed authentications" % sport)

    # Other addresses are not affected.
    ok = asyncio.run(good_auth(gw, "127.0.0.6", "neighbour"))
    h.check_eq(ok.get("type"), "AuthOk", "a client from 127.0.0.6 authenticates")
    agent = env.agent(gw, [f"tcp:0:127.0.0.1:{srv.port}"])
    port = agent.wait_tunnel(h.tunnel_name(srv.port))
    h.echo_round_trip(port)


if __name__ == "__main__":
    raise SystemExit(h.main())
