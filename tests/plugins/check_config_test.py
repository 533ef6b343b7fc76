#!/usr/bin/python3
"""muxgate / muxgate-agent --check-config with broken plugins in --modules.

A modules directory holds the real tcp plugin next to fakes that are refused
at load (ABI major 2, not ELF) or at create (an error, a C++ throw). Both
binaries must print one refusal line per bad file naming the file and the
reason, and still load tcp. --check-config fails (exit 1) when any plugin is
refused; at start only a listed plugin that is missing or fails is fatal.

Usage: check_config_test.py --gateway BIN --agent BIN --tcp tcp.so
                            --fakes FAKES_DIR --work DIR
"""
import argparse
import os
import shutil
import subprocess
import sys

# Bound on every process we start; --check-config does no network I/O.
RUN_TIMEOUT_S = 60

failures = []
shown = set()  # results whose output was already printed


def check(cond, what, result=None):
    if cond:
        return
    failures.append(what)
    print(f"FAIL: {what}", file=sys.stderr)
    if result is not None and id(result) not in shown:
        shown.add(id(result))
        print(f"  command: {' '.join(result.args)}\n  exit: {result.returncode}\n"
              f"  stdout:\n{indent(result.stdout)}\n  stderr:\n{indent(result.stderr)}",
              file=sys.stderr)


def indent(text):
    return "\n".join("    " + line for line in text.splitlines())


def run(argv, env_extra=None):
    env = dict(os.environ)
    env.pop("MUXGATE_TOKEN", None)
    env.update(env_extra or {})
    return subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env)


def log_lines(stderr):
    """The message part of each log line (after timestamp and level)."""
    out = []
    for line in stderr.splitlines():
        parts = line.split(None, 2)
        out.append(parts[2] if len(parts) == 3 and parts[0][:4].isdigit() else line)
    return out


def has_line(result, line):
    return line in log_lines(result.stderr)


def has_prefix(result, prefix):
    return any(l.startswith(prefix) for l in log_lines(result.stderr))


def run_until(binary, args, env, marker):
    """Starts `binary`, waits (bounded) for `marker` on stderr or for it to
    exit. Returns (True if the marker appeared, text seen). Always stops it.

    Reads the raw descriptor: select() on a buffered file object misses lines
    already pulled into Python's buffer, and would wait for bytes that never
    come."""
    import select
    import time
    p = subprocess.Popen([binary] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env={**os.environ, **env})
    seen = b""
    fd = p.stderr.fileno()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                data = os.read(fd, 65536)
                if not data:
                    break
                seen += data
                if marker.encode() in seen:
                    return True, seen.decode(errors="replace")
            elif p.poll() is not None:
                break
        return False, seen.decode(errors="replace")
    finally:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=RUN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        p.stderr.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway", required=True)
    ap.add_argument("--agent", required=True)
    ap.add_argument("--tcp", required=True)
    ap.add_argument("--fakes", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()

    shutil.rmtree(a.work, ignore_errors=True)
    mods = os.path.join(a.work, "modules")
    broken_only = os.path.join(a.work, "broken-only")
    os.makedirs(mods)
    os.makedirs(broken_only)
    shutil.copy(a.tcp, os.path.join(mods, "tcp.so"))
    bad = {
        # file in fakes/<dir>/ -> the refusal (after "plugin refused: <path>: ")
        ("abi_major_2", "abi_major_2.so"):
            # The fakes carry the host's own minor (ABI 1.1 today).
            "not binary compatible: plugin ABI 2.1, this host speaks ABI 1.x",
        ("create_error", "create_error.so"):
            "create failed: fake refuses to start: missing \"secret\" in [plugins.createerr]",
        ("create_throws", "create_throws.so"):
            "create failed: fake constructor throws: config was {}",
    }
    for (d, f) in list(bad) + [("not_elf", "not_elf.so")]:
        shutil.copy(os.path.join(a.fakes, d, f), os.path.join(mods, f))
    shutil.copy(os.path.join(a.fakes, "abi_major_2", "abi_major_2.so"),
                os.path.join(broken_only, "abi_major_2.so"))

    def expect_refusals(r, who):
        for (_, f), reason in bad.items():
            line = f"plugin refused: {os.path.join(mods, f)}: {reason}"
            check(has_line(r, line), f"{who}: stderr has `{line}`", r)
        prefix = f"plugin refused: {os.path.join(mods, 'not_elf.so')}: cannot load: "
        check(has_prefix(r, prefix), f"{who}: stderr has a line starting `{prefix}`", r)

    tcp_loaded = f"plugin tcp 1.0.0 (protocol_id 3) loaded from {os.path.join(mods, 'tcp.so')}"
    token = {"MUXGATE_TOKEN": "x"}

    # ---- gateway, quick mode: refusals are logged one per file, tcp still
    # loads, and the check fails (exit 1): --check-config is for finding
    # problems, and a refused plugin is one.
    gw = [a.gateway, "--listen", "127.0.0.1:0", "--self-signed", "--check-config"]
    r = run(gw + ["--modules", mods], token)
    expect_refusals(r, "gateway")
    check(has_line(r, tcp_loaded), f"gateway: stderr has `{tcp_loaded}`", r)
    check("muxgate: 4 plugins refused (see above)" in r.stderr.splitlines(),
          "gateway: says 4 plugins refused", r)
    check(r.returncode == 1, "gateway: exit status 1 when plugins are refused", r)

    # ---- gateway, a clean modules directory: exit 0, "1 plugin".
    clean = os.path.join(a.work, "clean")
    os.makedirs(clean, exist_ok=True)
    shutil.copy(a.tcp, os.path.join(clean, "tcp.so"))
    r = run(gw + ["--modules", clean], token)
    check("command line: configuration OK (0 agent entries, 1 plugin)" in r.stdout.splitlines(),
          "gateway (clean): stdout reports 1 plugin", r)
    check(r.returncode == 0, "gateway (clean): exit status 0", r)

    # ---- gateway, every plugin refused: exit 1.
    r = run(gw + ["--modules", broken_only], token)
    check(has_prefix(r, f"plugin refused: {os.path.join(broken_only, 'abi_major_2.so')}: "),
          "gateway (broken only): refusal line", r)
    check(r.returncode == 1, "gateway (broken only): exit status 1", r)

    # ---- running (not checking) with `plugins = [...]`: a broken file nobody
    # listed is logged and skipped, the gateway starts; a listed plugin that
    # fails stops the start.
    for listed, starts in ((['"tcp"'], True), (['"tcp"', '"createerr"'], False)):
        conf = os.path.join(a.work, "gateway.toml")
        with open(conf, "w") as f:
            f.write("[gateway]\nlisten = \"127.0.0.1:0\"\n"
                    f"modules_dir = \"{mods}\"\nplugins = [{', '.join(listed)}]\n"
                    "[tls]\nself_signed = true\n")
        who = f"gateway run (plugins = [{', '.join(listed)}])"
        ok, out = run_until(a.gateway, ["--config", conf], token, "listening on")
        if ok != starts:
            print(f"  {who} stderr:\n{indent(out)}", file=sys.stderr)
        check(ok == starts, f"{who}: {'starts' if starts else 'does not start'}")

    # ---- agent, quick mode: same refusals, tcp loads, check fails (exit 1).
    ag = [a.agent, "--check-config", "--gateway", "wss://127.0.0.1:1", "--insecure",
          "--modules", mods]
    r = run(ag + ["--tunnel", "tcp:0:127.0.0.1:9"], token)
    expect_refusals(r, "agent")
    check(has_line(r, tcp_loaded), f"agent: stderr has `{tcp_loaded}`", r)
    check(r.returncode == 1, "agent: exit status 1 when plugins are refused", r)
    r = run(ag[:-1] + [clean, "--tunnel", "tcp:0:127.0.0.1:9"], token)
    check("command line: configuration OK (1 tunnel)" in r.stdout.splitlines(),
          "agent (clean): stdout reports the tunnel OK", r)
    check(r.returncode == 0, "agent (clean): exit status 0", r)

    # ---- agent whose tunnel needs a refused plugin: exit 1, and it says why.
    r = run(ag + ["--tunnel", "createerr:0:127.0.0.1:9"], token)
    line = '--tunnel: tunnel "createerr-127.0.0.1-9": no plugin "createerr" is loaded'
    check(line in r.stderr.splitlines(), f"agent (tunnel on refused plugin): stderr has `{line}`",
          r)
    check(r.returncode == 1, "agent (tunnel on refused plugin): exit status 1", r)

    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    print("all --check-config checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
