"""bench.py --only httpplugin: wrk against nginx directly, through a TCP
tunnel, and through the HTTP plugin (plain port and the shared HTTPS port),
on one gateway and one agent with a configuration file each.

Each column is the same wrk run (2 threads, keep-alive connections, the
benchmark page); columns are interleaved per repetition and the median is
reported. Through the plugin every request head is parsed, routed and
rewritten on the gateway, which is what the comparison with the TCP
tunnel (bytes only) shows.
"""
from __future__ import annotations

import json
import re
import statistics
import subprocess
import time
from pathlib import Path

from .services import Targets
from .util import BenchError, Procs, free_port
from .work import WRK_LUA

TOKEN = "bench-token-not-secret"
HOST = "web.bench.test"


def _wait_log(proc, pattern: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    rx = re.compile(pattern)
    while True:
        m = rx.search(proc.log_text())
        if m:
            return m
        if not proc.alive() or time.monotonic() > deadline:
            raise BenchError(f"{proc.name}: no '{pattern}': {proc.log_text()[-2000:]}")
        time.sleep(0.05)


def _wrk(url: str, seconds: float, conns: int, host: str | None) -> dict:
    argv = ["wrk", "-t", "2", "-c", str(conns), "-d", f"{seconds}s", "--timeout", "5s",
            "-s", str(WRK_LUA)]
    if host:
        argv += ["-H", f"Host: {host}"]
    argv.append(url)
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    line = next((l for l in cp.stdout.splitlines() if l.startswith("JSON ")), None)
    if not line:
        return {"error": f"wrk: {cp.stderr.strip()[-300:] or cp.stdout.strip()[-300:]}"}
    r = json.loads(line[5:])
    secs = r["duration_us"] / 1e6
    return {"rps": r["requests"] / secs if secs else 0, "p50_ms": r["p50_us"] / 1000,
            "p99_ms": r["p99_us"] / 1000, "errors": r["errors"] + r["errors_status"]}


def run(bin_dir: Path, run_dir: Path, reps: int, seconds: float, conns: int = 32) -> str:
    run_dir.mkdir(parents=True, exist_ok=True)
    procs = Procs(run_dir)
    try:
        nginx = Targets._start_nginx(procs, run_dir)
        gw_port, http_port, tcp_port = free_port(), free_port(), free_port()
        cert, key = run_dir / "gw-cert.pem", run_dir / "gw-key.pem"
        (run_dir / "gateway.toml").write_text(f"""
[gateway]
listen = "127.0.0.1:{gw_port}"
public_bind = "127.0.0.1"
[tls]
self_signed = true
self_signed_names = ["*.bench.test"]
cert = "{cert}"
key = "{key}"
[auth]
[plugins.http]
listen = "127.0.0.1:{http_port}"
base_domain = "bench.test"
""")
        gw = procs.start("gateway", [str(bin_dir / "muxgate"), "--config", str(run_dir / "gateway.toml")],
                         env={"MUXGATE_TOKEN": TOKEN})
        _wait_log(gw, r"listening on 127\.0\.0\.1:%d " % gw_port)
        (run_dir / "agent.toml").write_text(f"""
[agent]
name = "bench"
gateway = "wss://127.0.0.1:{gw_port}/muxgate"
ca = "{cert}"
[[tunnel]]
name = "web"
protocol = "http"
local = "127.0.0.1:{nginx}"
[[tunnel]]
name = "tcpweb"
protocol = "tcp"
remote_port = {tcp_port}
local = "127.0.0.1:{nginx}"
""")
        ag = procs.start("agent", [str(bin_dir / "muxgate-agent"), "--config", str(run_dir / "agent.toml")],
                         env={"MUXGATE_TOKEN": TOKEN})
        _wait_log(ag, r"tunnel web is open at ")
        _wait_log(ag, r"tunnel tcpweb is open at ")
        columns = [
            ("direct", f"http://127.0.0.1:{nginx}/", None),
            ("tcp tunnel", f"http://127.0.0.1:{tcp_port}/", None),
            ("http plugin (http)", f"http://127.0.0.1:{http_port}/", HOST),
            ("http plugin (https)", f"https://127.0.0.1:{gw_port}/", HOST),
        ]
        results: dict[str, list[dict]] = {c[0]: [] for c in columns}
        for _ in range(reps):
            for name, url, host in columns:
                results[name].append(_wrk(url, seconds, conns, host))
        lines = [f"wrk -t2 -c{conns} -d{seconds}s, median of {reps}, keep-alive, {PAGE_HINT}",
                 "", "| path | requests/s | p50 ms | p99 ms | errors |", "|---|---:|---:|---:|---:|"]
        for name, _, _ in columns:
            ok = [r for r in results[name] if "error" not in r]
            if not ok:
                lines.append(f"| {name} | {results[name][0].get('error')} | | | |")
                continue
            lines.append(f"| {name} | {statistics.median(r['rps'] for r in ok):,.0f} | "
                         f"{statistics.median(r['p50_ms'] for r in ok):.2f} | "
                         f"{statistics.median(r['p99_ms'] for r in ok):.2f} | "
                         f"{sum(r['errors'] for r in ok)} |")
        (run_dir / "httpplugin.json").write_text(json.dumps(results, indent=1))
        return "\n".join(lines)
    finally:
        procs.stop_all()


PAGE_HINT = "the benchmark page from nginx"
