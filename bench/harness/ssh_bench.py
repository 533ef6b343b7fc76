"""`bench.py --only ssh`: scp throughput and interactive echo latency to a
private sshd, directly and through three tunnels:

  direct          scp -P <sshd> / ssh -p <sshd>
  ssh -R          `ssh -N -R 127.0.0.1:P:127.0.0.1:<sshd>` (aes128-gcm) to a
                  second private sshd, the client connects to P: the OpenSSH
                  reverse tunnel of the main benchmark's `ssh -N aes` column
  muxgate tunnel  the ssh plugin's plain forwarding: the tunnel's own public
                  port on the gateway (WSS agent connection)
  muxgate jump    the gateway's jump host: `ProxyJump gw` in an -F file, the
                  target named by its tunnel name (two SSH handshakes)

Each repetition measures every path in turn (interleaved):

* start: the wall time of `ssh <target> true` (handshake, session, exit).
* scp: the wall time of one `scp` process uploading a file from /dev/shm
  (or $TMPDIR) to the same directory (handshake included); the copy's size is
  checked; MB/s = size / time.
* echo: one `ssh -tt <target> 'stty -echo; echo READY; exec cat'` session
  per path; after READY, lines of 63 bytes + newline are written one at a time
  and each line's return (cat's output through the remote terminal) is timed:
  p50 / p99 per repetition.

The inner SSH session uses OpenSSH's default cipher on every path; the
target sshd sets SHLVL=1 so bash skips the account's ~/.bashrc. Reuses the
process helpers of tests/integration/harness.py and tests/ssh/sshkit.py.
"""
from __future__ import annotations

import getpass
import json
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATHS = ("direct", "ssh -R", "muxgate tunnel", "muxgate jump")
LINE = b"x" * 63 + b"\n"
WARMUP_LINES = 5


def _load(bin_dir: Path):
    """The test helpers under their own names (`harness` is also this
    package's name): sshkit imports `harness`, which is the integration
    harness only while sshkit loads."""
    import importlib.util
    os.environ["MUXGATE_BUILD_DIR"] = str(bin_dir.parent)
    mods = {}
    for name, path in (("it_harness", ROOT / "tests" / "integration" / "harness.py"),
                       ("sshkit", ROOT / "tests" / "ssh" / "sshkit.py")):
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        saved = sys.modules.get("harness")
        if name == "sshkit":
            sys.modules["harness"] = mods["it_harness"]
        try:
            spec.loader.exec_module(mod)
        finally:
            if name == "sshkit":
                if saved is not None:
                    sys.modules["harness"] = saved
                else:
                    del sys.modules["harness"]
        mods[name] = mod
    return mods["it_harness"], mods["sshkit"]


class Failed(Exception):
    pass


def _wait_banner(port: int, timeout: float = 20.0) -> None:
    """Until a connection to `port` reads an SSH version banner."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.recv(64).startswith(b"SSH-2.0-"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise Failed(f"no SSH banner on port {port} within {timeout:.0f} s")


def _scp(cmd: list[str], src: str, dst_spec: str, dst_path: str, size: int) -> float:
    """One upload; returns its wall time in seconds."""
    try:
        os.unlink(dst_path)
    except FileNotFoundError:
        pass
    t0 = time.monotonic()
    r = subprocess.run(cmd + ["-q", src, dst_spec], capture_output=True, timeout=300)
    dt = time.monotonic() - t0
    if r.returncode != 0:
        raise Failed(f"scp exit {r.returncode}: {r.stderr.decode(errors='replace')[-500:]}")
    got = os.path.getsize(dst_path)
    os.unlink(dst_path)
    if got != size:
        raise Failed(f"scp copied {got} bytes, not {size}")
    return dt


def _echo(cmd: list[str], lines: int) -> list[float]:
    """Round trips (µs) of `lines` lines through a remote `cat` on a terminal."""
    p = subprocess.Popen(cmd + ["-tt", "stty -echo; echo READY; exec cat"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    fd = p.stdout.fileno()
    buf = b""

    def read_until(mark: bytes, timeout: float) -> None:
        nonlocal buf
        deadline = time.monotonic() + timeout
        while mark not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise Failed(f"no {mark!r} within {timeout:.0f} s (got {buf[-200:]!r})")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise Failed(f"session ended: {p.stderr.read().decode(errors='replace')[-500:]}")
            buf += chunk
        buf = buf[buf.index(mark) + len(mark):]

    try:
        read_until(b"READY\r\n", 30)
        out = []
        for i in range(WARMUP_LINES + lines):
            t0 = time.perf_counter()
            p.stdin.write(LINE)
            read_until(LINE[:-1] + b"\r\n", 10)
            if i >= WARMUP_LINES:
                out.append((time.perf_counter() - t0) * 1e6)
        return out
    finally:
        try:
            p.stdin.write(b"\x04")   # ^D on an empty line: cat reads EOF, the session ends
            p.stdin.close()
            p.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _pct(v: list[float], q: float) -> float:
    s = sorted(v)
    return s[min(len(s) - 1, int(q * len(s)))]


def run(bin_dir: Path, out_dir: Path, results: Path, reps: int, size: int, lines: int,
        meta: dict, log) -> int:
    from .util import loadavg, machine
    h, k = _load(bin_dir)
    env = h.Env("bench-ssh")
    user = getpass.getuser()
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    data_dir = tempfile.mkdtemp(prefix="muxgate-bench-ssh-", dir=shm)
    scp_s = {p: [] for p in PATHS}
    start_s = {p: [] for p in PATHS}       # `ssh <target> true`, per repetition
    echo = {p: [] for p in PATHS}          # per repetition: list of round trips
    errors = {p: [] for p in PATHS}
    load_start = loadavg()
    try:
        key, pub = k.keygen(env, "user_key")
        sshd_port = k.sshd(env, [pub])
        # Bash reads the account's ~/.bashrc when sshd starts it with SHLVL
        # unset (its "run by ssh" rule); a slow .bashrc then adds its cost to
        # every session. SHLVL=1 keeps the measurement to SSH itself.
        with open(env.path("sshd_config"), "a") as f:
            f.write("SetEnv SHLVL=1\n")
        for p in list(env.procs):
            if p.name == "sshd":
                p.stop()
        env.start("sshd", [k.SSHD, "-D", "-e", "-f", env.path("sshd_config")]).wait_log(
            r"Server listening on 127\.0\.0\.1 port %d" % sshd_port, what="sshd again")
        pub_port = k.sshd(env, [pub], name="sshd-pub")
        gw, jport, _ = k.gateway(env, [("jump", [pub], ["*"])])
        fwd_port = h.pick_port()
        agent = k.agent(env, gw, [("bench-pc", f"127.0.0.1:{sshd_port}", "", 0),
                                  ("bench-fwd", f"127.0.0.1:{sshd_port}", "", fwd_port)])
        agent.proc.wait_log(r"tunnel bench-pc is open at ssh -J", what="bench-pc routed")
        agent.wait_tunnel("bench-fwd")
        cfg = k.client_config(env, jport, key)
        r_port = h.pick_port()
        rtun = env.start("ssh-R", ["ssh", "-F", cfg, "-o", "ProxyJump=none",
                                   "-o", "Ciphers=aes128-gcm@openssh.com",
                                   "-o", "ExitOnForwardFailure=yes", "-N",
                                   "-R", f"127.0.0.1:{r_port}:127.0.0.1:{sshd_port}",
                                   "-p", str(pub_port), f"{user}@127.0.0.1"],
                         stdin=subprocess.DEVNULL)
        _wait_banner(r_port)
        for port in (sshd_port, fwd_port):
            _wait_banner(port)
        log(f"ssh: up: sshd {sshd_port}, ssh -R {r_port}, tunnel {fwd_port}, jump {jport}")

        def direct_to(port):
            return (["ssh", "-F", cfg, "-o", "ProxyJump=none", "-p", str(port), f"{user}@127.0.0.1"],
                    ["scp", "-F", cfg, "-o", "ProxyJump=none", "-P", str(port)],
                    f"{user}@127.0.0.1:")
        clients = {"direct": direct_to(sshd_port), "ssh -R": direct_to(r_port),
                   "muxgate tunnel": direct_to(fwd_port),
                   "muxgate jump": (["ssh", "-F", cfg, f"{user}@bench-pc"], ["scp", "-F", cfg],
                                    f"{user}@bench-pc:")}
        src = os.path.join(data_dir, "src.bin")
        with open(src, "wb") as f:
            block = os.urandom(1 << 20)
            for i in range(0, size, len(block)):
                f.write(block[:min(len(block), size - i)])
        dst = os.path.join(data_dir, "dst.bin")
        # Warm-up: host keys into known_hosts, page cache.
        for name, (ssh, scp, spec) in clients.items():
            r = subprocess.run(ssh + ["true"], capture_output=True, timeout=60)
            if r.returncode != 0:
                raise Failed(f"{name}: ssh true: {r.stderr.decode(errors='replace')[-500:]}")
        log("ssh: warmed up")
        for rep in range(1, reps + 1):
            for name, (ssh, scp, spec) in clients.items():
                t0 = time.monotonic()
                r = subprocess.run(ssh + ["true"], capture_output=True, timeout=60)
                if r.returncode == 0:
                    start_s[name].append(time.monotonic() - t0)
                else:
                    errors[name].append(f"ssh true rep {rep}: "
                                        f"{r.stderr.decode(errors='replace')[-300:]}")
            for name, (ssh, scp, spec) in clients.items():
                try:
                    scp_s[name].append(_scp(scp, src, spec + dst, dst, size))
                except (Failed, subprocess.TimeoutExpired, OSError) as e:
                    errors[name].append(f"scp rep {rep}: {e}")
            for name, (ssh, scp, spec) in clients.items():
                try:
                    echo[name].append(_echo(ssh, lines))
                except (Failed, OSError) as e:
                    errors[name].append(f"echo rep {rep}: {e}")
            log(f"ssh: rep {rep}/{reps}: scp MB/s " + ", ".join(
                f"{n}={size / scp_s[n][-1] / 1e6:.0f}" if scp_s[n] else f"{n}=ERROR" for n in PATHS)
                + "; echo p50 µs " + ", ".join(
                f"{n}={_pct(echo[n][-1], 0.5):.0f}" if echo[n] else f"{n}=ERROR" for n in PATHS))
        if not rtun.alive():
            errors["ssh -R"].append("the ssh -R client exited")
    except (Failed, h.Failure) as e:
        errors["direct"].append(f"setup: {e}")
        log(f"ssh: {e}")
    finally:
        problems = env.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    load_end = loadavg()

    def stats(name):
        s = [size / t / 1e6 for t in scp_s[name]]
        # The copy without the session's start: scp minus `ssh true` of the
        # same repetition (both start and end a session the same way).
        net = [size / (t - c) / 1e6 for t, c in zip(scp_s[name], start_s[name]) if t > c]
        p50 = [_pct(v, 0.5) for v in echo[name]]
        p99 = [_pct(v, 0.99) for v in echo[name]]
        top = [max(v) for v in echo[name] if v]
        return {"start": [t * 1000 for t in start_s[name]], "scp": s, "net": net,
                "p50": p50, "p99": p99, "max": top}
    st = {n: stats(n) for n in PATHS}

    def med(v):
        return statistics.median(v) if v else float("nan")

    def cell(v, fmt="{:.0f}"):
        if not v:
            return "—"
        return (fmt.format(med(v)) + (f" ({fmt.format(min(v))}–{fmt.format(max(v))})"
                                      if len(v) > 1 else ""))

    def ratio(a, b):
        return f"{a / b:.2f}" if a == a and b == b and b else "—"

    m = machine()
    mib = size / (1 << 20)
    md = ["# SSH through muxgate: scp throughput and interactive echo latency", "",
          f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
          f"- commit: {meta.get('commit', '?')}",
          f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
          f"Linux {m['kernel']}",
          f"- load average (1, 5, 15 min): start {load_start}, end {load_end}",
          f"- command: `{meta.get('command', 'bench/bench.py --only ssh')}`",
          *([f"- note: {meta['note']}"] if meta.get("note") else []),
          f"- {reps} interleaved repetition{'s' if reps != 1 else ''}; scp uploads a {mib:g} MiB file (handshake "
          f"included); echo: {lines} lines of 64 bytes per session after {WARMUP_LINES} "
          "warm-up lines, p50/p99/max per repetition",
          "- figures: median over the repetitions (min–max); ratios of the medians, path / "
          "reference (throughput: < 1 is slower; latency: > 1 is slower)",
          "- session start: wall time of `ssh <target> true` (handshake, session, exit); "
          "scp without session start: size / (scp time − session start of the same "
          "repetition)",
          "", "## scp upload", "",
          "| path | session start ms | scp MB/s | scp MB/s without session start "
          "| without start vs direct | without start vs ssh -R |", "|---|---|---|---|---|---|"]
    d, r = st["direct"], st["ssh -R"]
    for n in PATHS:
        s = st[n]
        md.append(f"| {n} | {cell(s['start'])} | {cell(s['scp'])} | {cell(s['net'])} | "
                  f"{ratio(med(s['net']), med(d['net']))} | {ratio(med(s['net']), med(r['net']))} |")
    md += ["", "## interactive echo (64-byte line to `cat` on a remote terminal and back)", "",
           "| path | p50 µs | p99 µs | max µs | p50 vs direct | p50 vs ssh -R | p99 vs direct "
           "| p99 vs ssh -R |", "|---|---|---|---|---|---|---|---|"]
    for n in PATHS:
        s = st[n]
        md.append(f"| {n} | {cell(s['p50'])} | {cell(s['p99'])} | {cell(s['max'])} | "
                  f"{ratio(med(s['p50']), med(d['p50']))} | {ratio(med(s['p50']), med(r['p50']))} | "
                  f"{ratio(med(s['p99']), med(d['p99']))} | {ratio(med(s['p99']), med(r['p99']))} |")
    md += ["", "Paths: **direct** `scp -P <sshd>`; **ssh -R** `ssh -N -R` (aes128-gcm) to a second "
           "private sshd, the client connects to the forwarded port; **muxgate tunnel** the ssh "
           "plugin's tunnel port on the gateway (agent over WSS); **muxgate jump** `ProxyJump` "
           "through the gateway's jump host to the tunnel by name (SSH inside SSH). Every path "
           "ends at the same private sshd on 127.0.0.1; the inner session uses OpenSSH's default "
           "cipher. On loopback the client, sshd, gateway and agent share the machine's cores, so "
           "the scp figures are mostly CPU: each extra encryption layer (ssh -R, WSS, the jump "
           "host's SSH) costs throughput."]
    errs = [f"{n}: {e}" for n in PATHS for e in errors[n]] + list(problems)
    if errs:
        md += ["", "Errors:", ""] + [f"- {e}" for e in errs]
    text = "\n".join(md) + "\n"
    results.write_text(text)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ssh-results.json").write_text(json.dumps(
        {"reps": reps, "size": size, "lines": lines, "scp_s": scp_s, "echo_us": echo,
         "start_s": start_s, "errors": errors, "problems": problems, "load": [load_start, load_end]}, indent=1))
    print(text)
    return 0 if not errs and all(scp_s[n] and echo[n] and start_s[n] for n in PATHS) else 1
