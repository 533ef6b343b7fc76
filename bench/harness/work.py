"""The work measured on every path, one function per item. Each returns a
flat dict of metrics (None where a figure does not apply) and never raises
for a failed measurement: it returns {'error': ...} so the run goes on.
"""
from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .services import BenchPath, Targets
from .util import cpu_seconds, run_json

GIB = 1 << 30
WRK_LUA = Path(__file__).resolve().parent / "wrk_json.lua"


@dataclass
class Params:
    """Durations and sizes of one mode (see MODES in bench.py)."""
    reps: int
    iperf_s: int          # iperf3 -t
    lat_s: float          # ping-pong duration
    conn_s: float         # connection-rate duration per concurrency
    http_s: int           # wrk -d
    http_conns: int       # wrk -c
    inter_s: float        # interactive: ping duration idle and beside each bulk direction
    ramp_s: float         # bulk neighbour head start before measuring
    hold: int             # concurrent idle streams held for the memory test
    agents: tuple         # cumulative idle-agent counts for the memory test
    settle_s: float = 1.0 # memory test: pause before reading RSS after a change


class Runner:
    """Runs work items against paths; knows the helper and the targets."""

    def __init__(self, helper: Path, targets: Targets, params: Params):
        self.helper = str(helper)
        self.targets = targets
        self.p = params

    # ------------------------------------------------------------ throughput

    def iperf(self, path: BenchPath, streams: int, reverse: bool, prefix: str) -> dict:
        port = path.ports.get("iperf")
        if port is None:
            return {"error": "no iperf3 target on this path"}
        argv = ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(self.p.iperf_s), "-J"]
        if streams > 1:
            argv += ["-P", str(streams)]
        if reverse:
            argv += ["-R"]
        pub, agt = path.public_pids(), path.agent_pids()
        for attempt in range(4):
            c_pub0, c_agt0 = cpu_seconds(pub), cpu_seconds(agt)
            try:
                cp = subprocess.run(argv, capture_output=True, text=True,
                                    timeout=self.p.iperf_s + 30)
                out = json.loads(cp.stdout) if cp.stdout.strip() else {"error": cp.stderr.strip()}
            except subprocess.TimeoutExpired:
                out = {"error": "iperf3 timed out"}
            except ValueError:
                out = {"error": "iperf3 printed no JSON"}
            c_pub1, c_agt1 = cpu_seconds(pub), cpu_seconds(agt)
            # The server is still closing the previous test when that test's
            # connections went through a tunnel that closes them late: it
            # answers "busy", or closes the new control connection with the
            # client's cookie unread (a reset, seen as "unable to send cookie").
            err = str(out.get("error", ""))
            if "busy" not in err and "cookie" not in err:
                break
            time.sleep(0.5)
        if out.get("error"):
            self.targets.restart_iperf()
            return {"error": f"iperf3: {out['error']}"}
        recv = out["end"]["sum_received"]
        nbytes, secs = recv["bytes"], recv["seconds"]
        res = {f"{prefix}_gbps": recv["bits_per_second"] / 1e9}
        if pub or agt:
            gib = nbytes / GIB
            gbit = nbytes * 8 / 1e9
            res[f"{prefix}_cpu_pub_s_gib"] = (c_pub1 - c_pub0) / gib if gib else None
            res[f"{prefix}_cpu_agent_s_gib"] = (c_agt1 - c_agt0) / gib if gib else None
            # % of one core per Gbit/s == CPU seconds per Gbit, in percent
            res[f"{prefix}_core_pct_pub"] = 100 * (c_pub1 - c_pub0) / gbit if gbit else None
            res[f"{prefix}_core_pct_agent"] = 100 * (c_agt1 - c_agt0) / gbit if gbit else None
        res[f"{prefix}_seconds"] = secs
        return res

    def tput1(self, path, rep):
        return self.iperf(path, 1, False, "tput1")

    def tput8(self, path, rep):
        return self.iperf(path, 8, False, "tput8")

    def tputR(self, path, rep):
        return self.iperf(path, 1, True, "tputR")

    # --------------------------------------------------------------- latency

    def ping(self, path: BenchPath, duration: float, bulk: str | None = None) -> dict:
        argv = [self.helper, "ping", "127.0.0.1", str(path.ports["echo"]), "--size", "64",
                "--duration", str(duration), "--warmup", "0.1"]
        if bulk:
            target = "sink" if bulk == "up" else "source"
            argv += ["--bulk", bulk, "--bulk-port", str(path.ports[target]),
                     "--ramp", str(self.p.ramp_s)]
        return run_json(argv, timeout=duration + self.p.ramp_s + 60)

    def latency(self, path, rep):
        pub, agt = path.public_pids(), path.agent_pids()
        c0 = cpu_seconds(pub), cpu_seconds(agt)
        r = self.ping(path, self.p.lat_s)
        c1 = cpu_seconds(pub), cpu_seconds(agt)
        if r.get("error"):
            return {"error": f"ping: {r['error']}"}
        res = {"lat_p50_us": r["p50_us"], "lat_p99_us": r["p99_us"], "lat_p999_us": r["p999_us"],
               "lat_n": r["n"]}
        n = r.get("round_trips", r["n"])  # the CPU also covers the warm-up's round trips
        if (pub or agt) and n:
            res["lat_cpu_pub_us"] = (c1[0] - c0[0]) * 1e6 / n
            res["lat_cpu_agent_us"] = (c1[1] - c0[1]) * 1e6 / n
        return res

    def interactive(self, path, rep):
        """Idle p99, then p99 beside a bulk download, then beside a bulk
        upload, back to back on the same tunnel, so that the ratios compare
        figures taken seconds apart."""
        base = self.ping(path, self.p.inter_s)
        if base.get("error"):
            return {"error": f"idle ping: {base['error']}"}
        idle = base["p99_us"]
        res = {"inter_idle_p99_us": idle}
        for direction in ("down", "up"):
            key = f"inter_{direction}"
            r = self.ping(path, self.p.inter_s, bulk=direction)
            time.sleep(0.1)  # let the reset bulk stream drain out of the tunnel
            if r.get("error"):
                res["error"] = f"ping beside a bulk {direction}load: {r['error']}"
                continue
            res.update({f"{key}_p50_us": r["p50_us"], f"{key}_p99_us": r["p99_us"],
                        f"{key}_ratio": r["p99_us"] / idle if idle else None,
                        f"{key}_bulk_gbps": r.get("bulk_gbps"), f"{key}_n": r["n"]})
        return res

    # ------------------------------------------------------- connection rate

    def _conn(self, path, conc: int, client_close: bool = False) -> dict:
        # echo1 closes first (see tools/mgbench.c); with client_close the
        # client closes right after the echo, against the plain echo server.
        argv = [self.helper, "connrate", "127.0.0.1",
                str(path.ports["echo" if client_close else "echo1"]), "--conc", str(conc),
                "--duration", str(self.p.conn_s)]
        if client_close:
            argv.append("--client-close")
        pub, agt = path.public_pids(), path.agent_pids()
        c0 = cpu_seconds(pub), cpu_seconds(agt)
        r = run_json(argv, timeout=self.p.conn_s + 60)
        time.sleep(0.05)  # the last closes finish in the tunnel
        c1 = cpu_seconds(pub), cpu_seconds(agt)
        if r.get("error"):
            return {"error": f"connrate: {r['error']}"}
        k = f"conn{conc}" + ("c" if client_close else "")
        res = {f"{k}_per_s": r["per_s"], f"{k}_p50_ms": r["setup_p50_us"] / 1000,
               f"{k}_p99_ms": r["setup_p99_us"] / 1000, f"{k}_errors": r["errors"] + r["timeouts"]}
        if (pub or agt) and r["conns"]:
            res[f"{k}_cpu_pub_us"] = (c1[0] - c0[0]) * 1e6 / r["conns"]
            res[f"{k}_cpu_agent_us"] = (c1[1] - c0[1]) * 1e6 / r["conns"]
        return res

    def conn1(self, path, rep):
        return self._conn(path, 1)

    def conn8(self, path, rep):
        return self._conn(path, 8)

    def conn1c(self, path, rep):
        return self._conn(path, 1, client_close=True)

    # ------------------------------------------------------------------ http

    def http(self, path, rep):
        port = path.ports.get("http")
        if port is None:
            return {"error": "no HTTP target on this path"}
        argv = ["wrk", "-t", "2", "-c", str(self.p.http_conns), "-d", f"{self.p.http_s}s",
                "--timeout", "5s", "-s", str(WRK_LUA), f"http://127.0.0.1:{port}/"]
        try:
            cp = subprocess.run(argv, capture_output=True, text=True, timeout=self.p.http_s + 30)
        except subprocess.TimeoutExpired:
            return {"error": "wrk timed out"}
        line = next((l for l in cp.stdout.splitlines() if l.startswith("JSON ")), None)
        if not line:
            return {"error": f"wrk: {cp.stderr.strip()[-300:] or cp.stdout.strip()[-300:]}"}
        r = json.loads(line[5:])
        secs = r["duration_us"] / 1e6
        return {"http_rps": r["requests"] / secs if secs else 0, "http_p50_ms": r["p50_us"] / 1000,
                "http_p99_ms": r["p99_us"] / 1000, "http_errors": r["errors"] + r["errors_status"]}


# Work items in the order they run within one repetition; groups for --only.
WORK = ("tput1", "tput8", "tputR", "latency", "conn1", "conn8", "conn1c", "http", "interactive")
# Left out of the quick mode's default selection (time budget).
FULL_ONLY = ("conn1c",)
GROUPS = {
    "throughput": ("tput1", "tput8", "tputR"),
    "cpu": ("tput1",),
    "latency": ("latency",),
    "connrate": ("conn1", "conn8", "conn1c"),
    "http": ("http",),
    "interactive": ("interactive",),
}
