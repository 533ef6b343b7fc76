"""`bench.py --only rdp`: RDP handshake time through muxgate vs direct.

One FreeRDP shadow server (NLA, SAM file from winpr-hash) on an Xvfb
display, one gateway with the rdp plugin's shared port and one agent with a
tunnel to the server. Each repetition runs `xfreerdp +auth-only` (TCP,
X.224, TLS, CredSSP/NTLM, then disconnect) once per path, interleaved:

  direct        127.0.0.1:<server>
  tunnel port   the tunnel's own public port
  shared port   the shared port, routed by `Cookie: msts=desk`

The wall time of the whole xfreerdp process is measured (it includes the
client's start-up, which is the same on every path). Reuses the process
helpers of tests/integration/harness.py and tests/rdp/test_rdp.py.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load(bin_dir: Path):
    """The test helpers, under their own names: `harness` is also this
    package's name, so the integration harness is loaded from its file and
    stands in for `harness` only while test_rdp imports it."""
    import importlib.util
    os.environ["MUXGATE_BUILD_DIR"] = str(bin_dir.parent)
    mods = {}
    for name, path in (("it_harness", ROOT / "tests" / "integration" / "harness.py"),
                       ("test_rdp", ROOT / "tests" / "rdp" / "test_rdp.py")):
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        saved = sys.modules.get("harness")
        if name == "test_rdp":
            sys.modules["harness"] = mods["it_harness"]
        try:
            spec.loader.exec_module(mod)
        finally:
            if name == "test_rdp":
                if saved is not None:
                    sys.modules["harness"] = saved
                else:
                    del sys.modules["harness"]
        mods[name] = mod
    return mods["it_harness"], mods["test_rdp"]


def run(bin_dir: Path, out_dir: Path, results: Path, reps: int, log) -> int:
    h, t = _load(bin_dir)
    env = h.Env("bench-rdp")
    times = {"direct": [], "tunnel port": [], "shared port": []}
    failures = {k: 0 for k in times}
    try:
        desk = t.Desktop(env, "desk", {"user": "pass"})
        client = t.xvfb(env, "client-xvfb", (640, 480))
        gw, shared = t.rdp_gateway(env)
        agent = env.agent(name="office", config=t.agent_config(
            gw, "office", [("desk", f"127.0.0.1:{desk.port}", "{}")]))
        port = int(agent.proc.wait_log(r"tunnel desk is open at \S+:(\d+)$").group(1))
        paths = {"direct": (desk.port, ()), "tunnel port": (port, ()),
                 "shared port": (shared, ("/load-balance-info:Cookie: msts=desk",))}
        t.xfreerdp(env, client, desk.port, "user", "pass")  # warm-up (certificates, caches)
        for rep in range(1, reps + 1):
            for name, (p, extra) in paths.items():
                t0 = time.monotonic()
                rc, _ = t.xfreerdp(env, client, p, "user", "pass", *extra)
                dt = time.monotonic() - t0
                if rc == 0:
                    times[name].append(dt * 1000)
                else:
                    failures[name] += 1
            if rep % 10 == 0 or rep == reps:
                log(f"rdp: {rep}/{reps} repetitions")
    finally:
        problems = env.close()
    rows = []
    for name, v in times.items():
        if v:
            q = statistics.quantiles(v, n=10) if len(v) >= 2 else [v[0]] * 9
            rows.append((name, len(v), failures[name], statistics.median(v), min(v), q[8]))
        else:
            rows.append((name, 0, failures[name], float("nan"), float("nan"), float("nan")))
    md = ["# RDP handshake: xfreerdp +auth-only (NLA) through muxgate vs direct", "",
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {reps} interleaved repetitions, "
          "wall time of the whole xfreerdp process (`bench/bench.py --only rdp`).", "",
          "| path | ok | failed | median ms | min ms | p90 ms |", "|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.1f} | {r[4]:.1f} | {r[5]:.1f} |")
    base = rows[0][3]
    md += ["", "Overhead of the median against direct: " + ", ".join(
        f"{r[0]} {r[3] - base:+.1f} ms" for r in rows[1:]) + "."]
    text = "\n".join(md) + "\n"
    results.write_text(text)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "rdp-results.json").write_text(json.dumps(
        {"reps": reps, "times_ms": times, "failures": failures}, indent=1))
    print(text)
    for p in problems:
        print(f"bench rdp: {p}", file=sys.stderr)
    return 0 if all(r[1] for r in rows) and not any(failures.values()) else 1
