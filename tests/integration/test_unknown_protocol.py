#!/usr/bin/python3
"""10. Unknown plugins and protocols.

The agent refuses to start with --tunnel nosuch:...: it names the tunnel and
the missing plugin and exits non-zero (with and without --check-config). A
raw client that registers protocol_id 200 (no such plugin on the gateway)
gets RegisterError{unknown_protocol} and its session goes on: a tcp
Register on the same connection is then accepted."""
import asyncio
import os
import subprocess

import harness as h


def run_agent(env, args):
    e = dict(os.environ)
    e["MUXGATE_TOKEN"] = h.TOKEN
    return subprocess.run([h.agent_bin()] + args, capture_output=True, text=True,
                          timeout=h.START_TIMEOUT, env=e, cwd=env.dir)


@h.case("agent_unknown_plugin_fails_at_start")
def agent_unknown(env):
    gw = env.gateway()
    base = ["--gateway", gw.url, "--ca", gw.cert, "--name", "nosuch"]
    want = 'tunnel "nosuch-127.0.0.1-9": no plugin "nosuch" is loaded'
    for extra in ([], ["--check-config"]):
        r = run_agent(env, base + ["--tunnel", "nosuch:0:127.0.0.1:9"] + extra)
        h.check_eq(r.returncode, 1, f"exit status with an unknown plugin {extra}")
        h.check(want in r.stderr, f"the error names tunnel and plugin {extra}: {r.stderr!r}")
        h.check("configuration OK" not in r.stdout, "no 'configuration OK'")
    r = run_agent(env, base + ["--tunnel", "tcp:notaport:127.0.0.1:9"])
    h.check_eq(r.returncode, 2, "exit status with a malformed --tunnel")
    h.check('"notaport" is not a remote port' in r.stderr, f"malformed --tunnel: {r.stderr!r}")
    h.check(not gw.proc.find(r"agent=nosuch"), "nothing reached the gateway")


async def register_unknown(gw):
    ws = await h.ws_connect(gw)
    await ws.send(h.auth_msg(agent="rawproto"))
    ok = await h.ws_until(ws, lambda m: m.get("type") in ("AuthOk", "AuthError"))
    h.check_eq(ok.get("type"), "AuthOk", "raw client authenticated")
    await ws.send(h.control({"type": "Register", "id": 7, "tunnel": "weird", "protocol_id": 200,
                             "remote_port": 0}))
    err = await h.ws_until(ws, lambda m: m.get("type") in ("Registered", "RegisterError"))
    await ws.send(h.control({"type": "Register", "id": 8, "tunnel": "plain", "protocol_id": 3,
                             "remote_port": 0}))
    reg = await h.ws_until(ws, lambda m: m.get("type") in ("Registered", "RegisterError"))
    await ws.close()
    return err, reg


@h.case("raw_register_unknown_protocol_id")
def raw_unknown(env):
    gw = env.gateway()
    err, reg = asyncio.run(register_unknown(gw))
    h.check_eq((err.get("type"), err.get("id"), err.get("tunnel"), err.get("code")),
               ("RegisterError", 7, "weird", "unknown_protocol"), "answer to protocol_id 200")
    h.check("200" in err.get("message", ""), f"the message names the protocol id: {err}")
    h.check_eq((reg.get("type"), reg.get("id"), reg.get("tunnel")), ("Registered", 8, "plain"),
               "the same session then registers a tcp tunnel")
    h.check(reg.get("address", "").startswith("127.0.0.1:"), f"tcp tunnel address: {reg}")
    gw.proc.wait_log(r"agent=rawproto tunnel=weird refused: no plugin for protocol_id 200 on this "
                     r"gateway")


if __name__ == "__main__":
    raise SystemExit(h.main())
