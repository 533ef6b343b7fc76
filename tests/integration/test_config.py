#!/usr/bin/python3
"""12. Configuration-file mode.

* `muxgate token new` prints a fresh token and its token_hash line, which
  `muxgate token hash` reproduces.
* Per-agent ACLs with tokens from `token new`: a port outside the agent's
  `ports` and a protocol outside its `protocols` are refused (RegisterError
  `denied`, logged by the agent and the gateway); a port 0 tunnel gets a port
  from the agent's own ranges. Two agents with two working tunnels each move
  verified data concurrently, every public port reaching its own target.
* Bad files fail at start and with --check-config (exit 1) with
  `file:line:column: message` lines, all problems at once: unknown key with
  "did you mean", wrong type, value out of range, bad size, TOML syntax. Good
  files pass --check-config with "configuration OK" (exit 0).
* Known failing: an agent tunnel without `local` passes --check-config."""
import os
import re
import socket
import subprocess
import threading

import harness as h


def bundled_plugins():
    """'N plugin(s)' for the plugins built into the build tree's modules
    directory (the protocol plugins come and go with the build)."""
    d = os.path.join(h.BUILD_DIR, "lib", "muxgate", "modules")
    n = len([f for f in os.listdir(d) if f.endswith(".so")])
    return f"{n} plugin" + ("" if n == 1 else "s")


def token_new():
    r = subprocess.run([h.gateway_bin(), "token", "new"], capture_output=True, text=True,
                       timeout=h.START_TIMEOUT)
    h.check_eq(r.returncode, 0, "muxgate token new: exit status")
    m = re.fullmatch(r"token \(give this to the agent, e\.g\. in its token_file\):\n"
                     r"  (\S+)\n\n"
                     r"gateway entry \(etc/gateway\.toml, \[\[agent\]\]\):\n"
                     r'  token_hash = "(sha256:[0-9a-f]{64})"\n', r.stdout)
    h.check(m, f"muxgate token new output: {r.stdout!r}")
    return m.group(1), m.group(2)


@h.case("token_new_and_hash")
def tokens(env):
    t1, hash1 = token_new()
    t2, hash2 = token_new()
    h.check(re.fullmatch(r"mgt_[A-Za-z0-9_-]{43}", t1), f"token format: {t1!r}")
    h.check(t1 != t2 and hash1 != hash2, "two calls, two tokens")
    h.check_eq(h.token_hash(t1), hash1, "muxgate token hash of the new token")


def banner_handler(name):
    def handler(conn, idx):
        conn.sendall(f"{name}\n".encode())
        h.echo_handler(conn, idx)
    return handler


@h.case("acl_and_two_agents_concurrently")
def acl(env):
    base = h.pick_port_block(9)
    alpha_range = list(range(base, base + 3))
    alpha_single = base + 3
    beta_range = list(range(base + 4, base + 7))
    gamma_port = base + 7
    nobody = base + 8
    creds = {n: token_new() for n in ("alpha", "beta", "gamma")}
    agents_toml = f"""
[[agent]]
name = "alpha"
token_hash = "{creds['alpha'][1]}"
protocols = ["tcp"]
ports = ["{alpha_range[0]}-{alpha_range[-1]}", "{alpha_single}"]

[[agent]]
name = "beta"
token_hash = "{creds['beta'][1]}"
ports = ["{beta_range[0]}-{beta_range[-1]}"]

[[agent]]
name = "gamma"
token_hash = "{creds['gamma'][1]}"
protocols = ["ssh"]
ports = ["{gamma_port}"]
"""
    gw = env.gateway(config=lambda p: h.gateway_toml(env, p, agents=agents_toml, shared=False))
    r = subprocess.run([h.gateway_bin(), "--check-config", "--config", gw.config],
                       capture_output=True, text=True, timeout=h.START_TIMEOUT)
    h.check_eq((r.returncode, r.stdout),
               (0, f"{gw.config}: configuration OK (3 agent entries, {bundled_plugins()})\n"),
               "--check-config of the running gateway's file")

    servers = {n: env.server(banner_handler(n), n) for n in ("a-auto", "a-fixed", "b-auto",
                                                             "b-fixed", "g-tcp", "a-denied")}

    def agent_toml(name, tunnels):
        tok = env.write(f"{name}.token", creds[name][0] + "\n", 0o600)
        text = f"""[agent]
name = "{name}"
gateway = "wss://127.0.0.1:{gw.port}"
token_file = "{tok}"
ca = "{gw.cert}"
"""
        for tname, rport in tunnels:
            text += f"""
[[tunnel]]
name = "{tname}"
protocol = "tcp"
remote_port = {rport}
local = "127.0.0.1:{servers[tname].port}"
"""
        return text

    alpha = env.agent(name="alpha", config=agent_toml(
        "alpha", [("a-auto", 0), ("a-fixed", alpha_single), ("a-denied", nobody)]))
    beta = env.agent(name="beta", config=agent_toml("beta", [("b-auto", 0), ("b-fixed", beta_range[2])]))
    gamma = env.agent(name="gamma", config=agent_toml("gamma", [("g-tcp", gamma_port)]))

    ports = {"a-auto": alpha.wait_tunnel("a-auto"), "a-fixed": alpha.wait_tunnel("a-fixed"),
             "b-auto": beta.wait_tunnel("b-auto"), "b-fixed": beta.wait_tunnel("b-fixed")}
    h.check(ports["a-auto"] in alpha_range + [alpha_single],
            f"alpha's port 0 tunnel got {ports['a-auto']}, outside its ports")
    h.check_eq(ports["a-fixed"], alpha_single, "a-fixed port")
    h.check(ports["b-auto"] in beta_range, f"beta's port 0 tunnel got {ports['b-auto']}")
    h.check_eq(ports["b-fixed"], beta_range[2], "b-fixed port")
    alpha.proc.wait_log(r"tunnel a-denied refused by the gateway: agent may not use public port "
                        r"%d \(denied\)$" % nobody)
    gw.proc.wait_log(r"agent=alpha tunnel=a-denied refused: agent may not use public port %d$" % nobody)
    gamma.proc.wait_log(r'tunnel g-tcp refused by the gateway: agent may not use protocol "tcp" '
                        r'\(denied\)$')
    gw.proc.wait_log(r'agent=gamma tunnel=g-tcp refused: agent may not use protocol "tcp"$')
    for p in (nobody, gamma_port):
        h.check(h.connection_refused(p), f"port {p} of a refused tunnel is not open")

    size = h.scaled(2 * h.MiB, 128 * h.KiB)
    errors, done = [], []
    lock = threading.Lock()

    def client(tname, k):
        try:
            s = h.connect(ports[tname])
            h.check_eq(h.recv_exact(s, len(tname) + 1), f"{tname}\n".encode(),
                       f"{tname}: banner of its own target")
            out = {}

            def sender():
                out["sent"] = h.send_pattern(s, k, size)
                s.shutdown(socket.SHUT_WR)

            t = threading.Thread(target=sender)
            t.start()
            n, digest = h.recv_hash(s)
            t.join(h.IO_TIMEOUT)
            s.close()
            h.check_eq((n, digest), (size, out.get("sent")), f"{tname} connection {k}: echo")
            with lock:
                done.append(tname)
        except Exception as e:
            with lock:
                errors.append(f"{tname}/{k}: {e!r}")

    threads = [threading.Thread(target=client, args=(t, k)) for t in ports for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(h.IO_TIMEOUT * 3)
    h.check(not errors, f"errors: {errors}")
    h.check_eq(len(done), 16, "connections that completed")
    for a in (alpha, beta, gamma):
        h.check(not a.proc.find(r"gateway connection closed"), f"{a.proc.name} stayed connected")


def run_check(binary, path, check_only=True):
    argv = [binary] + (["--check-config"] if check_only else []) + ["--config", path]
    e = dict(os.environ)
    e["MUXGATE_TOKEN"] = h.TOKEN
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=h.START_TIMEOUT, env=e)
    except subprocess.TimeoutExpired:
        raise h.Failure(f"{' '.join(argv)} did not exit (it should refuse to start)")


BAD_GATEWAY = """[gateway]
listen = "127.0.0.1:1"
listn = "127.0.0.1:2"
threads = "four"
port_reservation_s = -1

[tls]
self_signed = true

[limits]
max_message = "4 XB"

[[agent]]
name = "a"
token_hash = "sha256:00"
"""

BAD_GATEWAY_PROBLEMS = [
    '{f}:3:1: unknown key [gateway] "listn" (did you mean "listen"?)',
    '{f}:4:11: [gateway] "threads" must be an integer',
    '{f}:5:22: [gateway] "port_reservation_s" must be in 0..604800 (got -1)',
    '{f}:11:15: [limits] "max_message": "4 XB" is not a size (say 262144, "256 KiB" or "4 MiB")',
    '{f}:15:14: [[agent]] token_hash must be "sha256:" and 64 hex digits (run `muxgate token new`)',
]

BAD_AGENT = """[agent]
gateway = "wss://127.0.0.1:1"
insecure = "yes"

[[tunnel]]
protocl = "tcp"
local = "127.0.0.1:80"
remote_port = 70000
"""

BAD_AGENT_PROBLEMS = [
    '{f}:3:12: [agent] "insecure" must be true or false',
    '{f}:5:1: [[tunnel]] "protocol" is required',
    '{f}:6:1: unknown key [[tunnel]] "protocl" (did you mean "protocol"?)',
    '{f}:8:15: [[tunnel]] "remote_port" must be in 0..65535 (got 70000)',
]


@h.case("bad_config_files_refused_with_positions")
def bad_configs(env):
    for binary, text, problems, prog in (
            (h.gateway_bin(), BAD_GATEWAY, BAD_GATEWAY_PROBLEMS, "muxgate"),
            (h.agent_bin(), BAD_AGENT, BAD_AGENT_PROBLEMS, "muxgate-agent")):
        f = env.write(f"bad-{prog}.toml", text)
        for check_only in (True, False):
            r = run_check(binary, f, check_only)
            what = f"{prog} {'--check-config' if check_only else 'start'} with {f}"
            h.check_eq(r.returncode, 1, f"{what}: exit status")
            lines = r.stderr.splitlines()
            for p in problems:
                h.check(p.format(f=f) in lines, f"{what}: missing line {p.format(f=f)!r} in "
                                                 f"{r.stderr!r}")
            h.check(f"{prog}: {len(problems)} problems in the configuration" in lines,
                    f"{what}: summary line (got {r.stderr!r})")
            h.check("configuration OK" not in r.stdout, f"{what}: no 'configuration OK'")
    f = env.write("syntax.toml", "[gateway\nlisten = 1\n")
    r = run_check(h.gateway_bin(), f)
    h.check_eq(r.returncode, 1, "TOML syntax error: exit status")
    h.check(re.search(r"^%s:1:\d+: .*expected '\]'" % re.escape(f), r.stderr, re.M),
            f"TOML syntax error reported with its position: {r.stderr!r}")
    r = run_check(h.gateway_bin(), env.path("does-not-exist.toml"))
    h.check_eq(r.returncode, 1, "missing file: exit status")
    h.check(f"{env.path('does-not-exist.toml')}: cannot open the file" in r.stderr,
            f"missing file named: {r.stderr!r}")


@h.case("good_config_files_pass_check")
def good_configs(env):
    g = env.write("good-gateway.toml", h.gateway_toml(env, 1) + f"""
[[agent]]
name = "solo"
token_hash = "{h.token_hash('x')}"
ports = ["20000-20099", "2222"]
""")
    r = run_check(h.gateway_bin(), g)
    h.check_eq((r.returncode, r.stdout), (0, f"{g}: configuration OK (1 agent entry, {bundled_plugins()})\n"),
               f"gateway --check-config (stderr {r.stderr!r})")
    a = env.write("good-agent.toml", """[agent]
name = "solo"
gateway = "wss://127.0.0.1:1"
insecure = true

[reconnect]
initial_ms = 100
max_ms = 2000

[limits]
stream_window = "512 KiB"

[[tunnel]]
protocol = "tcp"
remote_port = 2222
local = "127.0.0.1:22"

[[tunnel]]
name = "web"
protocol = "tcp"
local = "[::1]:8080"
""")
    r = run_check(h.agent_bin(), a)
    h.check_eq((r.returncode, r.stdout), (0, f"{a}: configuration OK (2 tunnels)\n"),
               f"agent --check-config (stderr {r.stderr!r})")


@h.case("agent_tunnel_without_local_is_refused")
def no_local(env):
    """Known failing (see README): a tcp tunnel with no `local` target passes
    --check-config and starts; every connection to it is then reset."""
    a = env.write("nolocal.toml", """[agent]
gateway = "wss://127.0.0.1:1"
insecure = true

[[tunnel]]
name = "nowhere"
protocol = "tcp"
remote_port = 2222
""")
    r = run_check(h.agent_bin(), a)
    h.check(r.returncode != 0, f"--check-config accepted a tunnel without a local target "
                               f"(stdout {r.stdout!r})")
    h.check(re.search(r"^%s:5:1: .*local" % re.escape(a), r.stderr, re.M),
            f"the problem names the tunnel's line and `local`: {r.stderr!r}")


if __name__ == "__main__":
    raise SystemExit(h.main())
