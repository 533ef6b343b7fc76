#!/usr/bin/python3
"""13. SIGHUP reloads the gateway's [[agent]] entries.

Removing beta's entry and sending SIGHUP disconnects beta (4002,
"credentials removed or changed by reload") and it cannot come back (each
retry: bad_token), while alpha's session and tunnel are untouched. A
reload of a broken file is refused and logged; the previous entries stay
(alpha can still connect, beta still cannot). Restoring beta's entry lets
beta back in by itself, on its old public port. Changing alpha's token
disconnects alpha. In quick mode SIGHUP is logged and ignored."""
import signal

import harness as h

RECONNECT = "\n[reconnect]\ninitial_ms = 100\nmax_ms = 500\n"


@h.case("sighup_revokes_removed_agent_keeps_old_on_error")
def reload(env):
    srv = env.echo_server()
    base = h.pick_port_block(2)
    toks = {n: h.TOKEN + "-" + n for n in ("alpha", "beta", "alpha2")}

    def entries(names, alpha_token="alpha"):
        out = ""
        for n in names:
            tok = toks[alpha_token] if n == "alpha" else toks[n]
            out += f'\n[[agent]]\nname = "{n}"\ntoken_hash = "{h.token_hash(tok)}"\nports = ["{base}-{base + 1}"]\n'
        return out

    def config(names, alpha_token="alpha"):
        return lambda p: h.gateway_toml(env, p, agents=entries(names, alpha_token), shared=False,
                                        auth="failure_burst = 100000")

    gw = env.gateway(config=config(["alpha", "beta"]))
    cfg_path = gw.config

    def rewrite(names, alpha_token="alpha"):
        with open(cfg_path, "w") as f:
            f.write(config(names, alpha_token)(gw.port))

    def agent(name, port, token_key=None):
        tok = env.write(f"{name}.token", toks[token_key or name] + "\n", 0o600)
        return env.agent(name=name, config=f"""[agent]
name = "{name}"
gateway = "wss://127.0.0.1:{gw.port}"
token_file = "{tok}"
ca = "{gw.cert}"
{RECONNECT}
[[tunnel]]
name = "t"
protocol = "tcp"
remote_port = {port}
local = "127.0.0.1:{srv.port}"
""")

    alpha = agent("alpha", base)
    beta = agent("beta", base + 1)
    h.check_eq(alpha.wait_tunnel("t"), base, "alpha's port")
    h.check_eq(beta.wait_tunnel("t"), base + 1, "beta's port")
    h.echo_round_trip(base)
    h.echo_round_trip(base + 1)

    # 1. Remove beta.
    gmark, amark, bmark = gw.proc.mark(), alpha.proc.mark(), beta.proc.mark()
    rewrite(["alpha"])
    gw.proc.signal(signal.SIGHUP)
    gw.proc.wait_log(r"reloaded 1 agent entry from %s$" % cfg_path, after=gmark)
    gw.proc.wait_log(r"agent=beta disconnected: credentials removed or changed by reload$", after=gmark)
    beta.proc.wait_log(r"gateway connection closed: .*credentials removed or changed by reload.*"
                       r"\(4002\)$", after=bmark)
    beta.proc.wait_count(r"gateway refused authentication: authentication failed \(bad_token\)", 2,
                         after=bmark, what="beta's retries refused")
    gw.proc.wait_log(r'auth failed from 127\.0\.0\.1:\d+ \(agent "beta"\): unknown agent name$',
                     after=gmark)
    h.wait_for(lambda: h.connection_refused(base + 1), h.EVENT_TIMEOUT, "beta's port to close")
    h.echo_round_trip(base)
    h.check(not alpha.proc.find(r"gateway connection closed", after=amark), "alpha untouched")

    # 2. A broken file is refused; the entries without beta stay.
    gmark, bmark = gw.proc.mark(), beta.proc.mark()
    with open(cfg_path, "a") as f:
        f.write('\n[gateway2]\nthreads = "x"\n')
    gw.proc.signal(signal.SIGHUP)
    gw.proc.wait_log(r"reload: %s:\d+:\d+: unknown key \"gateway2\"" % cfg_path, after=gmark)
    gw.proc.wait_log(r"reload: keeping the previous agent entries$", after=gmark)
    h.check(not gw.proc.find(r"reloaded \d+ agent", after=gmark), "nothing was reloaded")
    beta.proc.wait_count(r"gateway refused authentication", 2, after=bmark,
                         what="beta still refused after the broken reload")
    h.echo_round_trip(base)
    amark = alpha.proc.mark()
    alpha.proc.stop()
    alpha = agent("alpha", base)  # a new session with the kept entry
    h.check_eq(alpha.wait_tunnel("t"), base, "alpha's port after reconnecting")
    h.echo_round_trip(base)

    # 3. Beta's entry back: beta returns by itself, on its reserved port.
    gmark, bmark = gw.proc.mark(), beta.proc.mark()
    rewrite(["alpha", "beta"])
    gw.proc.signal(signal.SIGHUP)
    gw.proc.wait_log(r"reloaded 2 agent entries from ", after=gmark)
    h.check_eq(beta.wait_tunnel("t", after=bmark), base + 1, "beta's port after coming back")
    h.echo_round_trip(base + 1)

    # 4. alpha's token changes: alpha is disconnected, beta is not.
    gmark, amark, bmark = gw.proc.mark(), alpha.proc.mark(), beta.proc.mark()
    rewrite(["alpha", "beta"], alpha_token="alpha2")
    gw.proc.signal(signal.SIGHUP)
    gw.proc.wait_log(r"agent=alpha disconnected: credentials removed or changed by reload$", after=gmark)
    alpha.proc.wait_count(r"gateway refused authentication: authentication failed \(bad_token\)", 1,
                          after=amark, what="alpha refused with its old token")
    gw.proc.wait_log(r'auth failed from 127\.0\.0\.1:\d+ \(agent "alpha"\): wrong token$', after=gmark)
    h.echo_round_trip(base + 1)
    h.check(not beta.proc.find(r"gateway connection closed", after=bmark), "beta untouched")
    h.check(gw.proc.alive(), "the gateway survived every reload")


@h.case("sighup_in_quick_mode_is_ignored")
def quick_sighup(env):
    srv = env.echo_server()
    gw = env.gateway()
    agent = env.agent(gw, [f"tcp:0:127.0.0.1:{srv.port}"])
    port = agent.wait_tunnel(h.tunnel_name(srv.port))
    gw.proc.signal(signal.SIGHUP)
    gw.proc.wait_log(r"SIGHUP: no configuration file to reload \(quick mode\)$")
    h.echo_round_trip(port)
    h.check(not agent.proc.find(r"gateway connection closed"), "the agent stayed connected")


if __name__ == "__main__":
    raise SystemExit(h.main())
