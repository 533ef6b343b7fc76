"""Memory: RSS of fresh tunnel processes idle, with N idle streams held open,
after they close, and gateway RSS per idle agent with many agents connected.

Each measurement uses processes started for it (no earlier bulk transfer in
their allocator), and reads /proc/PID/status VmRSS after a settle pause.
"""
from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from pathlib import Path

from .services import Muxgate, Sshd, SshTunnel, Targets, CONFIGS
from .util import BenchError, Procs, echo_once, rollup_kb, rss_sum_kb

SETTLE_S = 1.0   # after a change, before reading RSS (lets freed memory and timers settle)


_pending: dict[int, bytes] = {}


def _readline(proc, timeout: float) -> str:
    """A line from a child's stdout, or '' after `timeout` seconds.

    Reads the raw descriptor and keeps the rest per child: select() on a
    buffered file object misses lines already pulled into its buffer."""
    import os
    import time
    fd = proc.popen.stdout.fileno()
    buf = _pending.get(fd, b"")
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            _pending[fd] = buf
            return ""
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        data = os.read(fd, 65536)
        if not data:
            _pending[fd] = b""
            return buf.decode()
        buf += data
    line, _, rest = buf.partition(b"\n")
    _pending[fd] = rest
    return line.decode() + "\n"


def streams(name: str, procs: Procs, run_dir: Path, bin_dir: Path, helper: Path,
            targets: Targets, sshd: Sshd | None, count: int) -> dict:
    """RSS of both sides of a fresh tunnel: idle, holding `count` idle
    streams (each has carried one 64-byte echo), and after they closed."""
    if name.startswith("muxgate"):
        path = Muxgate(f"mem-{name}", CONFIGS[name], procs, bin_dir, run_dir, targets,
                       tls=name == "muxgate-wss", which=("echo",))
    else:
        path = SshTunnel(f"mem-{name}", CONFIGS[name], procs, sshd, targets,
                         "aes128-gcm@openssh.com", False, which=("echo",))
    try:
        echo_once(path.ports["echo"])
        time.sleep(SETTLE_S)
        pub, agt = path.public_pids(), path.agent_pids()
        out = {"idle_pub_kb": rss_sum_kb(pub), "idle_agent_kb": rss_sum_kb(agt)}
        hold = procs.start(f"hold-{name}", [str(helper), "hold", "127.0.0.1",
                                            str(path.ports["echo"]), "--count", str(count)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = _readline(hold, timeout=120)
        try:
            held = json.loads(line)
        except ValueError:
            procs.stop(hold)
            return {"error": f"hold client: {line!r} {hold.log_text()[-300:]}"}
        time.sleep(SETTLE_S)
        out.update(held_pub_kb=rss_sum_kb(pub), held_agent_kb=rss_sum_kb(agt),
                   streams=held["opened"], stream_failures=held["failed"],
                   open_seconds=held["seconds"])
        hold.popen.stdin.close()
        try:
            hold.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        procs.stop(hold)
        time.sleep(2 * SETTLE_S)
        out.update(after_pub_kb=rss_sum_kb(pub), after_agent_kb=rss_sum_kb(agt))
        n = max(1, held["opened"])
        out["per_stream_pub_kb"] = (out["held_pub_kb"] - out["idle_pub_kb"]) / n
        out["per_stream_agent_kb"] = (out["held_agent_kb"] - out["idle_agent_kb"]) / n
        return out
    finally:
        path.stop()


def agents(procs: Procs, run_dir: Path, bin_dir: Path, steps: tuple, tls: bool = True) -> dict:
    """Gateway RSS fresh (no agent: the base), then with each cumulative
    number of idle agents connected by harness/agents.py."""
    gw = Muxgate("mem-agents-wss" if tls else "mem-agents-ws", "", procs, bin_dir, run_dir, None,
                 tls=tls, agent=False)
    try:
        time.sleep(SETTLE_S)
        base = rss_sum_kb(gw.public_pids())
        out = {"base_kb": base, "steps": []}
        client = procs.start(
            "many-agents",
            [sys.executable, str(Path(__file__).resolve().parent / "agents.py"),
             "--url", gw.url, "--token", Muxgate.TOKEN, "--steps", ",".join(map(str, steps))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            for step in steps:
                line = _readline(client, timeout=60 + step / 50)
                if not line:
                    out["error"] = f"agents client stopped: {client.log_text()[-500:]}"
                    break
                r = json.loads(line)
                time.sleep(2 * SETTLE_S)
                rss = rss_sum_kb(gw.public_pids())
                n = max(1, r["connected"])
                r.update(gateway_kb=rss, per_agent_kb=(rss - base) / n,
                         client_kb=rss_sum_kb([client.pid]))
                out["steps"].append(r)
                client.popen.stdin.write(b"next\n")
                client.popen.stdin.flush()
        finally:
            try:
                client.popen.stdin.close()
            except OSError:
                pass
            procs.stop(client)
        return out
    finally:
        gw.stop()


def gateway_base(procs: Procs, run_dir: Path, bin_dir: Path) -> dict:
    """RSS of a fresh WSS gateway with no agent."""
    gw = Muxgate("mem-base", "", procs, bin_dir, run_dir, None, tls=True, agent=False)
    try:
        time.sleep(SETTLE_S)
        out = {"base_kb": rss_sum_kb(gw.public_pids())}
        out.update({f"base_{k}": v for k, v in rollup_kb(gw.gateway.pid).items()})
        return out
    finally:
        gw.stop()


def check_alive(p) -> None:
    if not p.alive():
        raise BenchError(f"{p.name} exited: {p.log_text()[-500:]}")
