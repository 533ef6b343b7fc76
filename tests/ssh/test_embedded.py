#!/usr/bin/python3
"""The agent-embedded SSH server (options.server = "embedded"), reached
through the gateway's jump host with real OpenSSH clients, no sshd at all:

* exec: `echo`, stdout and stderr apart, exit codes passed through, stdin to
  a command (a hashed stream both ways);
* an interactive PTY session driven by tmux: a command typed at the shell,
  `stty size` before and after the window is resized;
* sftp put and get with checksums (sftp-server as the subsystem);
* a key missing from authorized_keys is refused."""
import hashlib
import subprocess
import time

import sshkit as k
from sshkit import h

SIZE = h.scaled(20 * h.MiB, 1 * h.MiB)


def setup(env):
    key, pub = k.keygen(env, "user_key")
    other_key, _ = k.keygen(env, "other_key")
    ak = env.write("embedded_authorized_keys", pub + "\n", 0o600)
    gw, jport, fp = k.gateway(env, [("jump", [pub], ["*"])])
    opts = (f'{{ server = "embedded", authorized_keys = "{ak}", '
            f'host_key = "{env.path("embedded_host_key")}", shell = "/bin/bash" }}')
    a = k.agent(env, gw, [("box", None, opts, 0)])
    a.proc.wait_log(r"tunnel box is open at ssh -J", what="box routed")
    cfg = k.client_config(env, jport, key)
    return key, other_key, gw, jport, a, cfg


def ssh(cfg, command, stdin=None, check=True, extra=()):
    return k.run(["ssh", "-F", cfg, *extra, "box", command], input=stdin, check=check,
                 what=f"ssh box {command!r}")


@h.case("embedded_exec_and_sftp")
def exec_and_sftp(env):
    key, other_key, gw, jport, a, cfg = setup(env)
    r = ssh(cfg, "echo hello; echo oops >&2")
    h.check_eq(r.stdout, b"hello\n", "stdout of echo")
    # (ssh's own warnings about new host keys come first)
    h.check(r.stderr.endswith(b"oops\n") and b"hello" not in r.stderr,
            f"stderr apart from stdout: {r.stderr!r}")
    a.proc.wait_log(r"ssh embedded: host key \S+ \(created\) fingerprint SHA256:", what="host key")
    for code in (0, 3, 42):
        r = ssh(cfg, f"exit {code}", check=False)
        h.check_eq(r.returncode, code, f"exit status {code}")
    path, digest = k.make_file(env, "data.bin", SIZE)
    with open(path, "rb") as f:
        data = f.read()
    r = ssh(cfg, "sha256sum", stdin=data)
    h.check_eq(r.stdout.decode().split()[0], digest, "hash of the bytes sent to a command")
    r = ssh(cfg, f"cat {path}")
    h.check_eq(hashlib.sha256(r.stdout).hexdigest(), digest, "hash of a command's output")
    # The agent's own token never reaches a user command.
    r = ssh(cfg, "env")
    h.check(b"MUXGATE_TOKEN" not in r.stdout, "MUXGATE_* is not in a command's environment")

    batch = env.write("sftp.batch", f"put {path} {env.path('up.bin')}\n"
                                    f"get {path} {env.path('down.bin')}\n")
    k.run(["sftp", "-F", cfg, "-q", "-b", batch, "box"], what="sftp put/get")
    h.check_eq(k.sha256_file(env.path("up.bin")), digest, "sftp upload checksum")
    h.check_eq(k.sha256_file(env.path("down.bin")), digest, "sftp download checksum")

    # A key that is not in authorized_keys (the jump host knows it is the
    # same user's key; the embedded server does not).
    bad = k.client_config(env, jport, other_key, name="bad_config", jump_key=key)
    r = k.run(["ssh", "-F", bad, "box", "true"], check=False)
    h.check(r.returncode != 0 and b"Permission denied (publickey)" in r.stderr,
            f"a key not in authorized_keys is refused: {r.stderr!r}")


def tmux(env, *args):
    return subprocess.run(["tmux", "-S", env.path("tmux.sock"), *args], capture_output=True,
                          text=True, timeout=h.EVENT_TIMEOUT)


def screen(env):
    return tmux(env, "capture-pane", "-p", "-t", "t").stdout


@h.case("embedded_pty_session")
def pty_session(env):
    key, other_key, gw, jport, a, cfg = setup(env)
    r = tmux(env, "new-session", "-d", "-s", "t", "-x", "100", "-y", "30",
             f"ssh -F {cfg} -tt box")
    h.check_eq(r.returncode, 0, f"tmux new-session: {r.stderr}")
    try:
        tmux(env, "send-keys", "-t", "t", "echo marker-$((6*7))", "Enter")
        h.wait_for(lambda: "marker-42" in screen(env), h.EVENT_TIMEOUT,
                   "the shell to run a typed command")
        tmux(env, "send-keys", "-t", "t", "tty; stty size", "Enter")
        h.wait_for(lambda: "30 100" in screen(env), h.EVENT_TIMEOUT, "stty size 30 100")
        h.check("/dev/pts/" in screen(env), f"the shell has a PTY: {screen(env)!r}")
        tmux(env, "resize-window", "-t", "t", "-x", "120", "-y", "40")
        h.wait_for(lambda: tmux(env, "display", "-p", "-t", "t", "#{window_width}").stdout.strip()
                   == "120", h.EVENT_TIMEOUT, "tmux to resize")
        tmux(env, "send-keys", "-t", "t", "stty size", "Enter")
        h.wait_for(lambda: "40 120" in screen(env), h.EVENT_TIMEOUT, "stty size after resize")
        tmux(env, "send-keys", "-t", "t", "exit", "Enter")
        h.wait_for(lambda: tmux(env, "has-session", "-t", "t").returncode != 0, h.EVENT_TIMEOUT,
                   "the session to end with the shell")
    finally:
        tmux(env, "kill-server")
    a.proc.wait_log(r"ssh embedded: .* shell with a PTY", what="log of the PTY shell")


if __name__ == "__main__":
    raise SystemExit(h.main())
