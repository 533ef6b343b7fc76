#!/usr/bin/python3
"""The ssh plugin on the gateway, with real OpenSSH clients and a private sshd.

* plain forwarding: a public port per tunnel to the agent's sshd; a command
  fed 50 MB and a command printing 50 MB, hashed on both ends; the client's
  and the server's version banners are logged;
* the jump host: `ssh -J` (ProxyJump in an -F file) by tunnel name, the same
  50 MB both ways, an audit line with the byte counts; scp and sftp of 100 MB
  both ways with checksums;
* two agents through the same jump port, each reached by its own name, a
  name both have is ambiguous and `agent.tunnel` picks one;
* refusals the user sees in ssh's stderr: a key the jump host does not know,
  a target name nobody registered, a target outside the key's allow list;
* the agent restarts: the next `ssh -J` works again.
Sizes shrink under sanitizers (scaled())."""
import os
import re
import signal

import sshkit as k
from sshkit import h

FIFTY = h.scaled(50 * h.MiB, 1 * h.MiB)
HUNDRED = h.scaled(100 * h.MiB, 2 * h.MiB)


def ssh(cfg, target, command, stdin=None, check=True, extra=()):
    return k.run(["ssh", "-F", cfg, *extra, target, command], input=stdin, check=check,
                 what=f"ssh {target} {command!r}")


def setup(env, users=None, tunnels=None):
    key, pub = k.keygen(env, "user_key")
    port = k.sshd(env, [pub])
    users = users or [("jump", [pub], ["*"])]
    gw, jport, fp = k.gateway(env, users)
    cfg = k.client_config(env, jport, key)
    return key, pub, port, gw, jport, fp, cfg


def hashed_both_ways(env, cfg, target, extra=()):
    """Feeds FIFTY bytes to `sha256sum` on the far side and reads FIFTY bytes
    back from `cat`; compares both hashes with the local ones."""
    path, digest = k.make_file(env, "fifty.bin", FIFTY)
    with open(path, "rb") as f:
        data = f.read()
    r = ssh(cfg, target, "sha256sum", stdin=data, extra=extra)
    h.check_eq(r.stdout.decode().split()[0], digest, f"{target}: hash of the uploaded bytes")
    r = ssh(cfg, target, f"cat {path}", extra=extra)
    h.check_eq(len(r.stdout), FIFTY, f"{target}: bytes downloaded")
    import hashlib
    h.check_eq(hashlib.sha256(r.stdout).hexdigest(), digest, f"{target}: hash of the download")


@h.case("forward_and_jump_50mb")
def forward_and_jump(env):
    key, pub, port, gw, jport, fp, cfg = setup(env)
    fwd_port = h.pick_port()
    a = k.agent(env, gw, [("office-pc", f"127.0.0.1:{port}", "", 0),
                          ("office-fwd", f"127.0.0.1:{port}", "", fwd_port)])
    a.proc.wait_log(r"tunnel office-pc is open at ssh -J", what="office-pc routed")
    a.wait_tunnel("office-fwd")

    # Plain forwarding: no jump, the tunnel's own port.
    hashed_both_ways(env, cfg, "root@127.0.0.1",
                     extra=("-o", "ProxyJump=none", "-p", str(fwd_port)))
    gw.proc.wait_log(r"ssh: tunnel agent/office-fwd 127\.0\.0\.1:\d+ client SSH-2\.0-OpenSSH_",
                     what="client banner on the gateway")
    a.proc.wait_log(r"ssh: tunnel office-fwd 127\.0\.0\.1:\d+ server SSH-2\.0-OpenSSH_",
                    what="server banner on the agent")

    # The jump host by name.
    mark = gw.proc.mark()
    hashed_both_ways(env, cfg, "office-pc")
    # The jump host's key was learnt under its fingerprint.
    r = k.run(["ssh-keygen", "-l", "-F", f"[127.0.0.1]:{jport}", "-f", env.path("known_hosts")])
    h.check(fp in r.stdout.decode(), f"known_hosts holds the jump host key {fp}: {r.stdout!r}")
    audits = gw.proc.findall(r"ssh jump: user=jump key=SHA256:\S+ client=127\.0\.0\.1:\d+ "
                             r"target=office-pc:22 agent=agent tunnel=office-pc up=(\d+) "
                             r"down=(\d+) duration=[\d.]+s end=", after=mark)
    h.wait_for(lambda: len(gw.proc.findall(r"ssh jump: user=jump .* end=", after=mark)) >= 2,
               h.EVENT_TIMEOUT, "two audit lines")
    audits = gw.proc.findall(r"ssh jump: user=jump key=SHA256:\S+ client=127\.0\.0\.1:\d+ "
                             r"target=office-pc:22 agent=agent tunnel=office-pc up=(\d+) "
                             r"down=(\d+) duration=[\d.]+s end=", after=mark)
    h.check(len(audits) >= 2, f"audit lines: {audits}")
    h.check(int(audits[0][0]) > FIFTY, f"upload audit counts the 50 MB: {audits[0]}")
    h.check(int(audits[1][1]) > FIFTY, f"download audit counts the 50 MB: {audits[1]}")
    # The agent saw who jumped.
    a.proc.wait_log(r'ssh: tunnel office-pc .*\{"jump_user":"jump".* server SSH-2\.0-',
                    what="agent log of the jump stream")


@h.case("scp_sftp_100mb")
def scp_sftp(env):
    key, pub, port, gw, jport, fp, cfg = setup(env)
    a = k.agent(env, gw, [("office-pc", f"127.0.0.1:{port}", "", 0)])
    a.proc.wait_log(r"tunnel office-pc is open at ssh -J", what="office-pc routed")
    src, digest = k.make_file(env, "hundred.bin", HUNDRED)
    # The far side is this machine: distinct file names are the far files.
    k.run(["scp", "-F", cfg, "-q", src, f"office-pc:{env.path('scp-up.bin')}"], what="scp up")
    h.check_eq(k.sha256_file(env.path("scp-up.bin")), digest, "scp upload checksum")
    k.run(["scp", "-F", cfg, "-q", f"office-pc:{src}", env.path("scp-down.bin")], what="scp down")
    h.check_eq(k.sha256_file(env.path("scp-down.bin")), digest, "scp download checksum")
    batch = env.write("sftp.batch", f"put {src} {env.path('sftp-up.bin')}\n"
                                    f"get {src} {env.path('sftp-down.bin')}\n")
    k.run(["sftp", "-F", cfg, "-q", "-b", batch, "office-pc"], what="sftp put/get")
    h.check_eq(k.sha256_file(env.path("sftp-up.bin")), digest, "sftp upload checksum")
    h.check_eq(k.sha256_file(env.path("sftp-down.bin")), digest, "sftp download checksum")


@h.case("two_agents_one_jump_port")
def two_agents(env):
    key, pub = k.keygen(env, "user_key")
    ports = {}
    for who in ("a1", "a2"):
        ports[who] = k.sshd(env, [pub], name=f"sshd-{who}")
        # Each sshd tells its sessions who it is.
        with open(env.path(f"sshd-{who}_config"), "a") as f:
            f.write(f"SetEnv WHO={who}\n")
    # Restart them with SetEnv (sshd reads its config at start).
    for p in list(env.procs):
        if p.name.startswith("sshd-"):
            p.stop()
    for who in ("a1", "a2"):
        p = env.start(f"sshd-{who}", [k.SSHD, "-D", "-e", "-f", env.path(f"sshd-{who}_config")])
        p.wait_log(r"Server listening on 127\.0\.0\.1 port %d" % ports[who], what="sshd again")
    gw, jport, fp = k.gateway(env, [("jump", [pub], ["*"])])
    cfg = k.client_config(env, jport, key)
    for who in ("a1", "a2"):
        a = k.agent(env, gw, [(f"pc-{who}", f"127.0.0.1:{ports[who]}", "", 0),
                              ("shared", f"127.0.0.1:{ports[who]}", "", 0)],
                    name=f"agent-{who}", agent_name=who)
        a.proc.wait_log(r"tunnel shared is open at ssh -J", what="shared routed")
    for who in ("a1", "a2"):
        r = ssh(cfg, f"pc-{who}", "echo $WHO")
        h.check_eq(r.stdout.decode().strip(), who, f"pc-{who} reaches {who}'s sshd")
        r = ssh(cfg, f"{who}.shared", "echo $WHO")
        h.check_eq(r.stdout.decode().strip(), who, f"{who}.shared reaches {who}'s sshd")
    r = ssh(cfg, "shared", "true", check=False)
    h.check(r.returncode != 0, "an ambiguous name fails")
    h.check(b"is ambiguous" in r.stderr and b"a1.shared" not in r.stdout,
            f"the user is told the name is ambiguous: {r.stderr!r}")


@h.case("refusals_shown_to_the_user")
def refusals(env):
    key, pub = k.keygen(env, "user_key")
    other_key, other_pub = k.keygen(env, "other_key")
    port = k.sshd(env, [pub])
    gw, jport, fp = k.gateway(env, [("jump", [pub], ["office-*"]),
                                    ("guest", [other_pub], ["lab-*"])])
    a = k.agent(env, gw, [("office-pc", f"127.0.0.1:{port}", "", 0),
                          ("secret-pc", f"127.0.0.1:{port}", "", 0)])
    a.proc.wait_log(r"tunnel secret-pc is open at ssh -J", what="secret-pc routed")
    cfg = k.client_config(env, jport, key)
    h.check_eq(ssh(cfg, "office-pc", "echo ok").stdout, b"ok\n", "the allowed target works")

    # A key the jump host does not know for this user.
    bad = k.client_config(env, jport, key, name="bad_config", jump_key=other_key)
    r = ssh(bad, "office-pc", "true", check=False)
    h.check(r.returncode != 0, "a wrong key fails")
    h.check(b"jump@127.0.0.1: Permission denied (publickey)" in r.stderr,
            f"the user sees the jump host refuse the key: {r.stderr!r}")
    gw.proc.wait_log(r"user \"jump\" offered key SHA256:\S+, which is not authorized",
                     what="gateway log of the refused key")

    # A name nobody registered: never resolved by DNS.
    r = ssh(cfg, "localhost", "true", check=False)
    h.check(r.returncode != 0, "an unknown name fails")
    h.check(b'no SSH tunnel named "localhost" is registered' in r.stderr,
            f"the user is told the name is unknown: {r.stderr!r}")

    # Registered, but not in this key's allow list.
    r = ssh(cfg, "secret-pc", "true", check=False)
    h.check(r.returncode != 0, "a denied target fails")
    h.check(b'user jump may not reach "secret-pc"' in r.stderr,
            f"the user is told the target is not allowed: {r.stderr!r}")
    gw.proc.wait_log(r'refused: user jump may not reach "secret-pc"', what="gateway log of the denial")


@h.case("agent_restart")
def agent_restart(env):
    key, pub, port, gw, jport, fp, cfg = setup(env)
    tunnels = [("office-pc", f"127.0.0.1:{port}", "", 0)]
    a = k.agent(env, gw, tunnels)
    a.proc.wait_log(r"tunnel office-pc is open at ssh -J", what="office-pc routed")
    h.check_eq(ssh(cfg, "office-pc", "echo one").stdout, b"one\n", "before the restart")
    mark = gw.proc.mark()
    a.proc.stop()
    gw.proc.wait_log(r"agent", after=mark, what="the gateway notices the agent left")
    r = ssh(cfg, "office-pc", "true", check=False)
    h.check(r.returncode != 0 and (b"is offline" in r.stderr or b"no SSH tunnel named" in r.stderr),
            f"while the agent is away the user is told so: {r.stderr!r}")
    a = k.agent(env, gw, tunnels)
    a.proc.wait_log(r"tunnel office-pc is open at ssh -J", what="office-pc routed again")
    h.check_eq(ssh(cfg, "office-pc", "echo two").stdout, b"two\n", "after the restart")


@h.case("example_configs_check")
def example_configs(env):
    """etc/gateway.ssh.toml and etc/agent.ssh.toml pass --check-config."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "etc")
    for binary, name in ((h.gateway_bin(), "gateway.ssh.toml"), (h.agent_bin(), "agent.ssh.toml")):
        import subprocess
        r = subprocess.run([binary, "--check-config", "--config", os.path.join(root, name)],
                           capture_output=True, timeout=h.START_TIMEOUT,
                           env=dict(os.environ, MUXGATE_TOKEN=h.TOKEN))
        h.check(r.returncode == 0 and b"configuration OK" in r.stdout,
                f"{name}: exit {r.returncode} {r.stdout!r} {r.stderr!r}")


if __name__ == "__main__":
    raise SystemExit(h.main())
