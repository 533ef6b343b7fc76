#!/usr/bin/python3
"""muxgate benchmark harness (see bench/README.md). Usually run through
bench/run.sh, which installs the tools and builds muxgate first.

    bench.py [--quick | --full | --smoke] [--only LIST] [--reps N]
             [--bin-dir build/bin] [--out bench/out] [--results bench/RESULTS.md]

Starts everything on loopback (echo/sink/source helper, iperf3, nginx, a
private sshd, ssh -R tunnels, muxgate gateways and agents), measures every
work item on every configuration, interleaved within each repetition, and
writes raw JSON under --out and the Markdown table to --results.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from harness import memory, report  # noqa: E402
from harness.services import (CONFIGS, Muxgate, Sshd, Targets, add_variant,  # noqa: E402
                              build_helper, make_path, tool_versions)
from harness.util import (BenchError, Procs, loadavg, machine, raise_nofile, rss_kb,  # noqa: E402
                          rss_sum_kb)
from harness.work import FULL_ONLY, GROUPS, WORK, Params, Runner  # noqa: E402

MODES = {
    # A few seconds per configuration: proves the harness works, measures little.
    "smoke": Params(reps=1, iperf_s=1, lat_s=0.3, conn_s=0.3, http_s=1, http_conns=8,
                    inter_s=0.3, ramp_s=0.2, hold=20, agents=(10,), settle_s=0.3),
    # Under two minutes on the 2-core machine.
    "quick": Params(reps=2, iperf_s=1, lat_s=0.4, conn_s=0.3, http_s=1, http_conns=32,
                    inter_s=0.3, ramp_s=0.2, hold=1000, agents=(1000,), settle_s=0.5),
    # About 15-20 minutes.
    "full": Params(reps=5, iperf_s=4, lat_s=3.0, conn_s=2.0, http_s=4, http_conns=32,
                   inter_s=2.5, ramp_s=0.5, hold=1000, agents=(1000, 5000, 10000)),
}
SMOKE_WORK = ("tput1", "latency", "conn1")
MEMORY_CONFIGS = ("muxgate-wss", "muxgate-ws", "ssh-N-aes")
# The quick mode leaves plain WS out of the memory phase: it differs from WSS
# only by TLS state, and the two-minute budget is tight.
QUICK_MEMORY_CONFIGS = ("muxgate-wss", "ssh-N-aes")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="all work, short durations, 2 repetitions (< 2 min; the default)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="longer durations, 5 repetitions, up to 10,000 agents (~15-20 min)")
    mode.add_argument("--smoke", dest="mode", action="store_const", const="smoke",
                      help="seconds: one repetition of a subset (the CTest smoke test)")
    ap.add_argument("--only", default="",
                    help="comma-separated configurations (" + ",".join(CONFIGS) + ") and/or work "
                         "(" + ",".join(list(GROUPS) + list(WORK) + ["memory"]) + "); "
                         "direct is always measured as the reference. `rdp` alone: the RDP "
                         "handshake bench (results in bench/RESULTS-rdp.md); `httpplugin` alone: "
                         "wrk through the HTTP plugin; `ssh` alone: scp and interactive echo "
                         "through the SSH plugin (results in bench/RESULTS-ssh.md)")
    ap.add_argument("--reps", type=int, help="repetitions (overrides the mode)")
    ap.add_argument("--bin-dir", default=str(ROOT / "build" / "bin"),
                    help="where muxgate and muxgate-agent are (default build/bin)")
    ap.add_argument("--out", default=str(BENCH / "out"), help="raw JSON and logs (default bench/out)")
    ap.add_argument("--results", default=str(BENCH / "RESULTS.md"),
                    help="the Markdown results file (default bench/RESULTS.md)")
    ap.add_argument("--note", default="", help="a note printed at the top of the results")
    ap.add_argument("--gateway-args", default="",
                    help="extra muxgate options for every gateway, e.g. \"--threads 1\"")
    ap.add_argument("--agent-args", default="", help="extra muxgate-agent options for every agent")
    ap.add_argument("--variant", action="append", default=[], metavar="LABEL=GATEWAY ARGS[;AGENT ARGS]",
                    help="add a muxgate WSS column 'muxgate-wss-LABEL' whose gateway (and agent) "
                         "get these extra options, measured interleaved with the others, e.g. "
                         "--variant t1='--threads 1' (repeatable)")
    ap.set_defaults(mode="quick")
    return ap.parse_args(argv)


def select(only: str, mode: str):
    configs, work, want_memory = [], [], None
    for tok in [t.strip() for t in only.split(",") if t.strip()]:
        if tok in CONFIGS:
            configs.append(tok)
        elif tok in GROUPS:
            work += [w for w in GROUPS[tok] if w not in work]
        elif tok in WORK:
            work.append(tok)
        elif tok == "memory":
            want_memory = True
        elif tok == "httpplugin":
            continue  # a separate comparison, run by main()
        else:
            raise SystemExit(f"--only: unknown configuration or work '{tok}'")
    if not configs:
        configs = list(CONFIGS)
    elif "direct" not in configs:
        configs.insert(0, "direct")
    configs = [c for c in CONFIGS if c in configs]        # table order
    if not work and want_memory is None:
        work = list(SMOKE_WORK if mode == "smoke" else
                    WORK if mode == "full" else [w for w in WORK if w not in FULL_ONLY])
        want_memory = True
    work = [w for w in WORK if w in work]
    return configs, work, bool(want_memory)


def git_commit() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "-uno", "--",
                                ".", ":!bench"], capture_output=True, text=True).stdout.strip()
        return rev + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main(argv=None) -> int:
    args = parse_args(argv if argv is not None else sys.argv[1:])
    if args.only.strip() == "rdp":
        # A separate measurement with its own processes (harness/rdp_bench.py).
        from harness import rdp_bench
        t0 = time.monotonic()
        results = Path(args.results) if args.results != str(BENCH / "RESULTS.md") else \
            BENCH / "RESULTS-rdp.md"
        return rdp_bench.run(Path(args.bin_dir).resolve(), Path(args.out).resolve(), results,
                             args.reps or (40 if args.mode == "full" else
                                           3 if args.mode == "smoke" else 15),
                             lambda m: print(f"[{time.monotonic() - t0:6.1f}s] {m}", flush=True))
    if args.only.strip() == "ssh":
        # scp and interactive echo through muxgate's ssh plugin (harness/ssh_bench.py).
        from harness import ssh_bench
        t0 = time.monotonic()
        results = Path(args.results) if args.results != str(BENCH / "RESULTS.md") else \
            BENCH / "RESULTS-ssh.md"
        size, lines, reps = {"smoke": (4, 50, 1), "quick": (32, 200, 3),
                             "full": (64, 500, 5)}[args.mode]
        return ssh_bench.run(Path(args.bin_dir).resolve(), Path(args.out).resolve() / "ssh",
                             results, args.reps or reps, size << 20, lines,
                             {"commit": git_commit(), "note": args.note, "command": " ".join(
                                 ["bench/bench.py"] + [shlex.quote(a) for a in (
                                     argv if argv is not None else sys.argv[1:])])},
                             lambda m: print(f"[{time.monotonic() - t0:6.1f}s] {m}", flush=True))
    variants = [add_variant(v) for v in args.variant]
    params = MODES[args.mode]
    if args.reps:
        params.reps = args.reps
    if "httpplugin" in [t.strip() for t in args.only.split(",")]:
        # wrk direct vs TCP tunnel vs the HTTP plugin (bench/harness/httpplugin.py).
        from harness import httpplugin
        secs = {"smoke": 1, "quick": 3, "full": 10}[args.mode]
        out = Path(args.out) / "httpplugin"
        print(httpplugin.run(Path(args.bin_dir).resolve(), out, params.reps, secs), flush=True)
        return 0
    configs, work, want_memory = select(args.only, args.mode)
    configs += [v for v in variants if v not in configs]
    memory.SETTLE_S = params.settle_s
    Muxgate.extra_gateway_args = shlex.split(args.gateway_args)
    Muxgate.extra_agent_args = shlex.split(args.agent_args)
    bin_dir = Path(args.bin_dir).resolve()
    for exe in ("muxgate", "muxgate-agent"):
        if not (bin_dir / exe).exists():
            print(f"bench: {bin_dir / exe} not found (build first, or pass --bin-dir)", file=sys.stderr)
            return 2
    out_dir = Path(args.out).resolve()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = out_dir / f"run-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    raise_nofile()

    t_start = time.monotonic()
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(), "machine": machine(), "mode": args.mode, "reps": params.reps,
        "params": vars(params), "configs": configs, "labels": {c: CONFIGS[c] for c in configs},
        "work": work, "memory": want_memory,
        "load_start": loadavg(), "tools": tool_versions(), "note": args.note,
        "gateway_args": args.gateway_args, "agent_args": args.agent_args,
        "command": " ".join(["bench/bench.py"] + [shlex.quote(a) for a in (
            argv if argv is not None else sys.argv[1:])]),
        "json_name": f"results-{stamp}.json", "bin_dir": str(bin_dir),
        "json_path": _shown(out_dir / f"results-{stamp}.json"),
    }
    res = {"meta": meta, "runs": [], "memory": {}}
    procs = Procs(run_dir)
    sshd = None

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)

    def log(msg):
        print(f"[{time.monotonic() - t_start:6.1f}s] {msg}", flush=True)

    status = 0
    try:
        helper = build_helper(out_dir)
        log(f"mode {args.mode}: {params.reps} repetition(s) of {', '.join(work) or 'no work'} on "
            f"{', '.join(configs)}{'; then memory' if want_memory else ''}; logs in {run_dir}")
        targets = Targets(procs, run_dir, helper,
                          need_http="http" in work,
                          need_iperf=any(w.startswith("tput") for w in work))
        if any(c.startswith("ssh") for c in configs) or (
                want_memory and "ssh-N-aes" in configs):
            sshd = Sshd(procs, run_dir)
        paths = []
        for name in configs if work else []:
            paths.append(make_path(name, procs, run_dir, bin_dir, targets, sshd))
            log(f"up: {name} {paths[-1].ports}")
        runner = Runner(helper, targets, params)

        for rep in range(1, params.reps + 1):
            for item in work:
                for path in paths:
                    if not path.alive():
                        m = {"error": f"{path.name} is not running (see {run_dir})"}
                    else:
                        try:
                            m = getattr(runner, item)(path, rep)
                        except Exception as e:  # noqa: BLE001 - record it, go on
                            m = {"error": f"{type(e).__name__}: {e}"}
                    entry = {"rep": rep, "config": path.name, "work": item}
                    if m.get("error"):
                        entry["error"] = m.pop("error")
                    entry["metrics"] = m
                    res["runs"].append(entry)
                log(f"rep {rep} {item}: " + "  ".join(
                    f"{r['config']}={_headline(r)}" for r in res["runs"][-len(paths):]))
            _save(res, out_dir, meta)

        after = {}
        for path in paths:
            if path.kind == "direct":
                continue
            pub, agt = path.public_pids(), path.agent_pids()
            after[path.name] = {
                "pub_kb": rss_sum_kb(pub), "agent_kb": rss_sum_kb(agt),
                "pub_hwm_kb": sum(rss_kb(p)["hwm_kb"] for p in pub),
                "agent_hwm_kb": sum(rss_kb(p)["hwm_kb"] for p in agt)}
        if after and work:
            res["memory"]["after_load"] = after

        if want_memory:
            for path in paths:            # quiet machine for the memory phase
                if path.kind != "direct":
                    path.stop()
            mem = res["memory"]
            mem["gateway_base"] = memory.gateway_base(procs, run_dir, bin_dir)
            log(f"memory: gateway base {mem['gateway_base']}")
            mem["streams"] = {}
            for name in QUICK_MEMORY_CONFIGS if args.mode != "full" else MEMORY_CONFIGS:
                if name not in configs:
                    continue
                try:
                    mem["streams"][name] = memory.streams(name, procs, run_dir, bin_dir, helper,
                                                          targets, sshd, params.hold)
                except BenchError as e:
                    mem["streams"][name] = {"error": str(e)}
                log(f"memory: {params.hold} streams on {name}: {mem['streams'][name]}")
            if "muxgate-wss" in configs:
                mem["agents"] = memory.agents(procs, run_dir, bin_dir, params.agents)
                log(f"memory: agents {mem['agents']}")
            if "muxgate-ws" in configs and args.mode == "full":
                # The same over plain WS: the difference is each agent's TLS state.
                mem["agents_ws"] = memory.agents(procs, run_dir, bin_dir, params.agents[:1],
                                                 tls=False)
                log(f"memory: agents over WS {mem['agents_ws']}")
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        res["meta"]["fatal"] = str(e)
        status = 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        res["meta"]["fatal"] = "interrupted"
        status = 130
    except Exception as e:  # noqa: BLE001 - a harness bug: keep what was measured
        import traceback
        traceback.print_exc()
        res["meta"]["fatal"] = f"{type(e).__name__}: {e}"
        status = 1
    finally:
        procs.stop_all()
        if sshd:
            sshd.cleanup()
        meta["elapsed_s"] = time.monotonic() - t_start
        meta["load_end"] = loadavg()
        _save(res, out_dir, meta)
    if res["runs"] or res["memory"]:
        Path(args.results).write_text(report.render(res) + _kept_history(Path(args.results)))
        log(f"wrote {args.results} and {out_dir / meta['json_name']}")
    return status


# Everything from this line to the end of the results file is written by hand
# (the optimizations, before and after) and survives a new run.
HISTORY_MARK = "<!-- history: kept by bench.py across runs -->"


def _kept_history(results: Path) -> str:
    try:
        text = results.read_text()
    except OSError:
        return ""
    at = text.find(HISTORY_MARK)
    return "" if at < 0 else "\n" + text[at:]


def _shown(p: Path) -> str:
    """A path as the results file shows it: relative to the repository if inside."""
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def _headline(r: dict) -> str:
    if r.get("error"):
        return "ERROR"
    m = r["metrics"]
    for k in ("tput1_gbps", "tput8_gbps", "tputR_gbps", "lat_p50_us", "conn1_per_s", "conn8_per_s",
              "conn1c_per_s", "http_rps", "inter_down_ratio", "inter_up_ratio"):
        if k in m and m[k] is not None:
            return report.fmt(m[k])
    return "?"


def _save(res: dict, out_dir: Path, meta: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(res, indent=1, default=str)
    (out_dir / meta["json_name"]).write_text(text)
    (out_dir / "latest.json").write_text(text)


if __name__ == "__main__":
    sys.exit(main())
