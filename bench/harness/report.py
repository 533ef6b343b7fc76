"""Turns the raw results (bench/out/*.json) into bench/RESULTS.md."""
from __future__ import annotations

from .util import summarize

SHORT = {
    "direct": "direct",
    "ssh-N-aes": "ssh -N aes",
    "ssh-N-chacha": "ssh -N chacha",
    "ssh-tt-aes": "ssh -tt aes",
    "muxgate-wss": "muxgate WSS",
    "muxgate-ws": "muxgate WS",
}

# key, label, better ("hi" / "lo" / None for informational)
METRICS = [
    ("tput1_gbps", "iperf3, 1 stream (Gbit/s)", "hi"),
    ("tput8_gbps", "iperf3, 8 streams (Gbit/s)", "hi"),
    ("tputR_gbps", "iperf3, 1 stream reverse (Gbit/s)", "hi"),
    ("tput1_cpu_pub_s_gib", "CPU s/GiB, public side (gateway / sshd), 1 stream", "lo"),
    ("tput1_cpu_agent_s_gib", "CPU s/GiB, agent side (agent / ssh), 1 stream", "lo"),
    ("tput1_core_pct_pub", "% of a core per Gbit/s, public side, 1 stream", "lo"),
    ("tput1_core_pct_agent", "% of a core per Gbit/s, agent side, 1 stream", "lo"),
    ("tputR_cpu_pub_s_gib", "CPU s/GiB, public side, reverse", "lo"),
    ("tputR_cpu_agent_s_gib", "CPU s/GiB, agent side, reverse", "lo"),
    ("lat_p50_us", "64 B round trip p50 (µs)", "lo"),
    ("lat_p99_us", "64 B round trip p99 (µs)", "lo"),
    ("lat_p999_us", "64 B round trip p99.9 (µs)", "lo"),
    ("lat_cpu_pub_us", "CPU µs per round trip, public side", "lo"),
    ("lat_cpu_agent_us", "CPU µs per round trip, agent side", "lo"),
    ("conn1_per_s", "connections/s, concurrency 1", "hi"),
    ("conn1_p99_ms", "setup p99 (ms), concurrency 1", "lo"),
    ("conn8_per_s", "connections/s, concurrency 8", "hi"),
    ("conn8_p99_ms", "setup p99 (ms), concurrency 8", "lo"),
    ("conn8_cpu_pub_us", "CPU µs per connection, public side (concurrency 8)", "lo"),
    ("conn8_cpu_agent_us", "CPU µs per connection, agent side (concurrency 8)", "lo"),
    ("conn1c_per_s", "connections/s, concurrency 1, client closes first", "hi"),
    ("conn1c_p99_ms", "setup p99 (ms), concurrency 1, client closes first", "lo"),
    ("http_rps", "HTTP req/s (wrk)", "hi"),
    ("http_p50_ms", "HTTP p50 (ms)", "lo"),
    ("http_p99_ms", "HTTP p99 (ms)", "lo"),
    ("inter_idle_p99_us", "64 B p99 idle, just before the bulk runs (µs)", "lo"),
    ("inter_down_p99_us", "64 B p99 beside a bulk download (µs)", "lo"),
    ("inter_down_ratio", "  … ÷ idle p99 (same repetition)", "lo"),
    ("inter_down_bulk_gbps", "  … the bulk neighbour's rate (Gbit/s)", None),
    ("inter_up_p99_us", "64 B p99 beside a bulk upload (µs)", "lo"),
    ("inter_up_ratio", "  … ÷ idle p99 (same repetition)", "lo"),
    ("inter_up_bulk_gbps", "  … the bulk neighbour's rate (Gbit/s)", None),
]

RATIO_KEYS = ["tput1_gbps", "tput8_gbps", "tputR_gbps", "lat_p50_us", "lat_p99_us", "conn1_per_s",
              "conn8_per_s", "conn1c_per_s", "http_rps", "http_p99_ms", "inter_down_p99_us", "inter_up_p99_us"]


def fmt(v, unit: str = "") -> str:
    if v is None:
        return "—"
    a = abs(v)
    if a >= 1000:
        s = f"{v:,.0f}"
    elif a >= 100:
        s = f"{v:.0f}"
    elif a >= 10:
        s = f"{v:.1f}"
    elif a >= 1:
        s = f"{v:.2f}"
    else:
        s = f"{v:.3g}"
    return s + unit


def kib(v) -> str:
    if v is None:
        return "—"
    if abs(v) >= 1024:
        return f"{v / 1024:.1f} MiB"
    return f"{v:,.0f} KiB"


def aggregate(runs: list[dict]) -> dict:
    """{config: {metric: summary}} over repetitions."""
    vals: dict = {}
    for r in runs:
        for k, v in r.get("metrics", {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                vals.setdefault(r["config"], {}).setdefault(k, []).append(v)
    return {c: {k: summarize(v) for k, v in m.items()} for c, m in vals.items()}


def cell(s) -> str:
    if not s:
        return "—"
    if s["n"] == 1 or s["min"] == s["max"]:
        return fmt(s["median"])
    return f"{fmt(s['median'])} [{fmt(s['min'])}–{fmt(s['max'])}]"


def med(agg, config, key):
    s = agg.get(config, {}).get(key)
    return s["median"] if s else None


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def render(res: dict) -> str:
    meta, runs = res["meta"], res["runs"]
    configs = meta["configs"]
    agg = aggregate(runs)
    m = meta["machine"]
    out = []
    w = out.append
    w("# muxgate benchmark results\n")
    w(f"- **Machine:** {m['cores']} cores, {m['cpu']}, {m['memory_gib']} GiB RAM, Linux {m['kernel']}")
    w(f"- **Date:** {meta['date']}  ·  **Commit:** `{meta['commit']}`  ·  "
      f"**Mode:** {meta['mode']} ({meta['reps']} repetition{'s' if meta['reps'] != 1 else ''}, "
      f"configurations interleaved in each), {meta['elapsed_s']:.0f} s")
    w(f"- **Load average** (1/5/15 min) at start {meta['load_start']}, at end {meta['load_end']}")
    t = meta["tools"]
    w(f"- **Tools:** {t['openssh']}; {t['iperf3']}; {t['wrk']}; {t['nginx']}")
    w(f"- **Command:** `{meta['command']}`")
    if meta.get("gateway_args") or meta.get("agent_args"):
        w(f"- **Extra options:** gateway `{meta.get('gateway_args') or '—'}`, agent "
          f"`{meta.get('agent_args') or '—'}`")
    if meta.get("note"):
        w(f"\n> **Note:** {meta['note']}")
    if meta.get("fatal"):
        w(f"\n> **The run ended early:** {meta['fatal']}")
    w("")
    w(f"Each cell: median [min–max] over the repetitions. Raw figures: `{meta.get('json_path', meta['json_name'])}`.")
    w("How each figure is measured: [bench/README.md](README.md).\n")

    # ---------------------------------------------------------- main table
    w("## Results\n")
    for c in configs:
        if c.startswith("muxgate-wss-") and c not in SHORT:
            SHORT[c] = "WSS " + c[len("muxgate-wss-"):]
    variants = [c for c in configs if c.startswith("muxgate-wss-")]
    if variants:
        w("Variants: " + "; ".join(f"**{SHORT[c]}** = {meta.get('labels', {}).get(c, c)}"
                                   for c in variants) + ".\n")
    w("| work | " + " | ".join(SHORT.get(c, c) for c in configs) + " |")
    w("|---|" + "---:|" * len(configs))
    for key, label, _ in METRICS:
        if not any(agg.get(c, {}).get(key) for c in configs):
            continue
        w(f"| {label} | " + " | ".join(cell(agg.get(c, {}).get(key)) for c in configs) + " |")
    w("")

    # ---------------------------------------------------------- ratios
    tunnels = [c for c in configs if c.startswith("muxgate")]
    for c in configs:
        if c.startswith("muxgate-wss-") and c not in SHORT:
            SHORT[c] = "WSS " + c[len("muxgate-wss-"):]
    refs = [c for c in ("direct", "ssh-N-aes", "ssh-tt-aes") if c in configs]
    if tunnels and refs:
        w("## Ratios\n")
        w("Median ÷ median. For throughput and rates higher is better; for times lower is better.\n")
        cols = [(t, r) for t in tunnels for r in refs]
        w("| work | " + " | ".join(f"{SHORT[t]} ÷ {SHORT[r]}" for t, r in cols) + " |")
        w("|---|" + "---:|" * len(cols))
        for key, label, _ in METRICS:
            if key not in RATIO_KEYS:
                continue
            row = [ratio(med(agg, t, key), med(agg, r, key)) for t, r in cols]
            if all(v is None for v in row):
                continue
            w(f"| {label} | " + " | ".join("—" if v is None else f"{v:.2f}×" for v in row) + " |")
        w("")

    # ---------------------------------------------------------- memory
    mem = res.get("memory", {})
    if mem:
        w("## Memory (RSS, fresh processes)\n")
        if "gateway_base" in mem:
            b = mem["gateway_base"]
            w(f"- Gateway base RSS (fresh WSS gateway, no agent): **{kib(b.get('base_kb'))}**"
              + (f" — of which shared library pages {kib(b.get('base_shared_kb'))}, private "
                 f"{kib(b.get('base_private_kb'))} (anonymous {kib(b.get('base_anon_kb'))}); "
                 f"PSS {kib(b.get('base_pss_kb'))} (from smaps_rollup)"
                 if b.get("base_shared_kb") is not None else ""))
        st = mem.get("streams", {})
        if st:
            w("")
            w("Idle tunnel, then holding N idle streams (each carried one 64-byte echo), then after "
              "they closed. Public side: gateway / sshd session processes; agent side: agent / ssh client.\n")
            names = list(st)
            w("| | " + " | ".join(f"{SHORT.get(n, n)} public | {SHORT.get(n, n)} agent" for n in names) + " |")
            w("|---|" + "---:|---:|" * len(names))
            def row(label, kp, ka, f=kib):
                cells = []
                for n in names:
                    d = st[n]
                    cells += [f(d.get(kp)), f(d.get(ka))]
                w(f"| {label} | " + " | ".join(cells) + " |")
            row("idle, one tunnel", "idle_pub_kb", "idle_agent_kb")
            n_streams = next((d.get("streams") for d in st.values() if d.get("streams")), None)
            row(f"with {n_streams} idle streams", "held_pub_kb", "held_agent_kb")
            row("per idle stream", "per_stream_pub_kb", "per_stream_agent_kb",
                lambda v: "—" if v is None else f"{v:.1f} KiB")
            row("after the streams closed", "after_pub_kb", "after_agent_kb")
            errs = {n: d["error"] for n, d in st.items() if d.get("error")}
            for n, e in errs.items():
                w(f"\n- {n}: {e}")
            w("")
        ags = [(t, mem[k]) for t, k in (("WSS", "agents"), ("plain WS", "agents_ws")) if mem.get(k)]
        if ags:
            w("Idle agents on one gateway (minimal agents from `bench/harness/agents.py`: "
              "authenticated, answering heartbeats, no tunnels). Per idle agent = (gateway RSS − "
              "its RSS before any agent) ÷ agents.\n")
            w("| transport | agents connected | failed | gateway RSS | per idle agent | connect time |")
            w("|---|---:|---:|---:|---:|---:|")
            for t, ag in ags:
                for s in ag.get("steps", []):
                    w(f"| {t} | {s['connected']:,} | {s['failed']:,} | {kib(s['gateway_kb'])} | "
                      f"{s['per_agent_kb']:.1f} KiB | {s['seconds']:.1f} s |")
                if ag.get("error"):
                    w(f"\n- {t} error: {ag['error']}")
            w("")
        after = mem.get("after_load", {})
        if after:
            w("RSS of the benchmark's long-running tunnel processes at the end of the run "
              "(idle again after all the work above; peak = VmHWM):\n")
            w("| | public side | public peak | agent side | agent peak |")
            w("|---|---:|---:|---:|---:|")
            for n, d in after.items():
                w(f"| {SHORT.get(n, n)} | {kib(d['pub_kb'])} | {kib(d['pub_hwm_kb'])} | "
                  f"{kib(d['agent_kb'])} | {kib(d['agent_hwm_kb'])} |")
            w("")

    # ---------------------------------------------------------- targets
    w("## Targets (muxgate WSS unless said)\n")
    w("| target | goal | measured | met |")
    w("|---|---|---:|:---:|")
    mx = "muxgate-wss"

    def target(name, goal, value, ok, unit=""):
        if value is None:
            w(f"| {name} | {goal} | — | ? |")
        else:
            w(f"| {name} | {goal} | {fmt(value)}{unit} | {'yes' if ok(value) else '**no**'} |")

    target("one-stream throughput vs `ssh -N -R` aes128-gcm", "≥ 2×",
           ratio(med(agg, mx, "tput1_gbps"), med(agg, "ssh-N-aes", "tput1_gbps")), lambda v: v >= 2, "×")
    target("CPU per Gbit/s, gateway", "≤ 10% of a core", med(agg, mx, "tput1_core_pct_pub"),
           lambda v: v <= 10, "%")
    target("CPU per Gbit/s, agent", "≤ 10% of a core", med(agg, mx, "tput1_core_pct_agent"),
           lambda v: v <= 10, "%")
    target("64 B round trip p50", "≤ 80 µs", med(agg, mx, "lat_p50_us"), lambda v: v <= 80, " µs")
    target("64 B round trip p99", "≤ 110 µs", med(agg, mx, "lat_p99_us"), lambda v: v <= 110, " µs")
    target("new connections/s, concurrency 8", "≥ 15,000", med(agg, mx, "conn8_per_s"),
           lambda v: v >= 15000)
    target("new connections/s, concurrency 1", "≥ 8,000", med(agg, mx, "conn1_per_s"),
           lambda v: v >= 8000)
    target("HTTP req/s", "≥ 50,000", med(agg, mx, "http_rps"), lambda v: v >= 50000)
    target("HTTP p99", "≤ 2.8 ms", med(agg, mx, "http_p99_ms"), lambda v: v <= 2.8, " ms")
    target("interactive p99 beside a bulk download ÷ idle p99", "≤ 3×",
           med(agg, mx, "inter_down_ratio"), lambda v: v <= 3, "×")
    target("interactive p99 beside a bulk upload ÷ idle p99", "≤ 3×",
           med(agg, mx, "inter_up_ratio"), lambda v: v <= 3, "×")
    st = mem.get("streams", {}).get(mx, {})
    target("per idle tunnelled connection, gateway", "≤ 16 KB", st.get("per_stream_pub_kb"),
           lambda v: v * 1024 <= 16000, " KiB")
    target("per idle tunnelled connection, agent", "≤ 16 KB", st.get("per_stream_agent_kb"),
           lambda v: v * 1024 <= 16000, " KiB")
    steps = mem.get("agents", {}).get("steps") or [{}]
    target(f"gateway RSS per idle agent ({steps[-1].get('connected', '?')} agents)", "≤ 64 KiB",
           steps[-1].get("per_agent_kb"), lambda v: v <= 64, " KiB")
    base = mem.get("gateway_base", {}).get("base_kb")
    target("gateway base RSS", "≤ 10 MB", base / 1024 if base else None,
           lambda v: v * 1024 * 1024 <= 10e6, " MiB")
    w("")
    w("Direct-path references from the same run (the machine's floor): "
      f"round trip p50 {fmt(med(agg, 'direct', 'lat_p50_us'))} µs, p99 {fmt(med(agg, 'direct', 'lat_p99_us'))} µs; "
      f"connections/s c1 {fmt(med(agg, 'direct', 'conn1_per_s'))}, c8 {fmt(med(agg, 'direct', 'conn8_per_s'))}; "
      f"HTTP {fmt(med(agg, 'direct', 'http_rps'))} req/s.\n")

    # ---------------------------------------------------------- errors
    errs = [r for r in runs if r.get("error")]
    if errs:
        w("## Errors during the run\n")
        for r in errs[:30]:
            w(f"- rep {r['rep']}, {r['config']}, {r['work']}: {r['error']}")
        if len(errs) > 30:
            w(f"- … and {len(errs) - 30} more (see the JSON)")
        w("")
    return "\n".join(out) + "\n"
