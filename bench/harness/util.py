"""Processes, ports, /proc readings and small statistics for the harness.

Everything the harness starts is a `Proc`, registered in one `Procs` set and
stopped by PID (SIGTERM, then SIGKILL) when the run ends, however it ends.
"""
from __future__ import annotations

import errno
import os
import resource
import signal
import socket
import statistics
import subprocess
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


class BenchError(RuntimeError):
    """A setup step failed; the message says which and where its log is."""


def raise_nofile() -> int:
    """Raise our open-file limit to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def echo_once(port: int, timeout: float = 5.0) -> bool:
    """Connect, send 8 bytes, expect them back: the whole path works."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"harness!")
            got = b""
            while len(got) < 8:
                part = s.recv(8 - len(got))
                if not part:
                    return False
                got += part
            return got == b"harness!"
    except OSError:
        return False


def wait_echo(port: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if echo_once(port, timeout=2.0):
            return True
        time.sleep(0.1)
    return False


class Proc:
    """A process we started, with its output in a log file."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict | None = None,
                 stdin=subprocess.DEVNULL, stdout=None, cwd: str | None = None):
        self.name = name
        self.argv = argv
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.popen = subprocess.Popen(
            argv, stdin=stdin, stdout=stdout if stdout is not None else self._log,
            stderr=self._log, env=full_env, cwd=cwd, start_new_session=True)
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, grace: float = 3.0) -> None:
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                try:
                    self.popen.kill()
                except ProcessLookupError:
                    pass
                self.popen.wait(timeout=5)
        for f in (self.popen.stdin, self.popen.stdout):
            if f:
                try:
                    f.close()
                except OSError:
                    pass
        self._log.close()


class Procs:
    """Every process of a run; stop_all() stops them newest first."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.items: list[Proc] = []

    def start(self, name: str, argv: list[str], **kw) -> Proc:
        p = Proc(name, argv, self.log_dir, **kw)
        self.items.append(p)
        return p

    def stop(self, p: Proc) -> None:
        p.stop()
        if p in self.items:
            self.items.remove(p)

    def stop_all(self) -> None:
        for p in reversed(self.items):
            try:
                p.stop()
            except Exception:  # noqa: BLE001 - keep stopping the others
                pass
        self.items.clear()


# ------------------------------------------------------------------ /proc

def rss_kb(pid: int) -> dict:
    """VmRSS and VmHWM of a process in KiB (0 when gone)."""
    out = {"rss_kb": 0, "hwm_kb": 0}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    out["rss_kb"] = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    out["hwm_kb"] = int(line.split()[1])
    except OSError:
        pass
    return out


def rollup_kb(pid: int) -> dict:
    """RSS split from /proc/PID/smaps_rollup: shared (library pages other
    processes may map too), private, anonymous (heap, stacks), PSS."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                    out[parts[0][:-1]] = int(parts[1])
    except OSError:
        return {}
    return {"rss_kb": out.get("Rss", 0), "pss_kb": out.get("Pss", 0),
            "shared_kb": out.get("Shared_Clean", 0) + out.get("Shared_Dirty", 0),
            "private_kb": out.get("Private_Clean", 0) + out.get("Private_Dirty", 0),
            "anon_kb": out.get("Anonymous", 0)}


def rss_sum_kb(pids: list[int]) -> int:
    return sum(rss_kb(p)["rss_kb"] for p in pids)


def cpu_seconds(pids: list[int]) -> float:
    """utime+stime of the processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                text = f.read()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLK_TCK


def children_of(pid: int) -> list[int]:
    """Direct children of a process, from /proc/*/stat."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                text = f.read()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            out.append(int(d))
    return out


def descendants_of(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = children_of(todo.pop())
        out.extend(kids)
        todo.extend(kids)
    return out


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def machine() -> dict:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": model, "kernel": os.uname().release,
            "memory_gib": round(mem_kb / 1024 / 1024, 1)}


# ------------------------------------------------------------- statistics

def summarize(values: list[float]) -> dict | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "n": len(vals), "values": vals}


def run_json(argv: list[str], timeout: float) -> dict:
    """Run a helper that prints one JSON object; {'error': ...} on failure."""
    import json
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s: {' '.join(argv)}"}
    text = cp.stdout.strip().splitlines()
    for line in reversed(text):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    return {"error": f"exit {cp.returncode}: {cp.stderr.strip()[-300:] or cp.stdout.strip()[-300:]}"}


def is_eaddrinuse(e: OSError) -> bool:
    return e.errno == errno.EADDRINUSE
