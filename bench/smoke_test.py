#!/usr/bin/python3
"""CTest smoke test of the benchmark harness (label: bench).

Runs `bench.py --smoke` (one repetition of a subset, small memory tests) into
a scratch directory and checks that the results file is well formed: the
results table has a column for every configuration, every column has at
least one figure, and the memory and target sections are there. It never
looks at how fast anything was. Exit 77 (skipped) if a program the harness
needs is not installed.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from harness.report import SHORT  # noqa: E402
from harness.services import CONFIGS  # noqa: E402

NEEDED = ("iperf3", "ssh", "ssh-keygen", "gcc")
NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?(e[-+]?\d+)?( \[.*\])?$")


def fail(msg: str) -> int:
    print(f"bench smoke test FAILED: {msg}", file=sys.stderr)
    return 1


def table_after(text: str, heading: str) -> list[list[str]]:
    """Rows (cells) of the first Markdown table after `heading`."""
    at = text.find(heading)
    if at < 0:
        return []
    rows = []
    for line in text[at:].splitlines()[1:]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif rows:
            break
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--work-dir", required=True)
    args = ap.parse_args()

    missing = [p for p in NEEDED if not shutil.which(p)]
    if not (shutil.which("sshd") or Path("/usr/sbin/sshd").exists()):
        missing.append("sshd")
    if missing:
        print(f"skipped: not installed: {', '.join(missing)} (scripts/deps.sh --test)")
        return 77

    work = Path(args.work_dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    results = work / "RESULTS.md"
    cmd = ["/usr/bin/python3", str(BENCH / "bench.py"), "--smoke", "--bin-dir", args.bin_dir,
           "--out", str(work / "out"), "--results", str(results)]
    print("+", " ".join(cmd), flush=True)
    cp = subprocess.run(cmd, timeout=280)
    if cp.returncode != 0:
        return fail(f"the harness exited with {cp.returncode}")
    if not results.exists():
        return fail("no results file")
    text = results.read_text()
    print(text)

    for heading in ("# muxgate benchmark results", "**Machine:**", "**Commit:**", "## Results",
                    "## Memory", "## Targets"):
        if heading not in text:
            return fail(f"'{heading}' is missing")

    rows = table_after(text, "## Results")
    if len(rows) < 4:
        return fail("the results table has fewer than two data rows")
    header, rule, data = rows[0], rows[1], rows[2:]
    want = [SHORT[c] for c in CONFIGS]
    if header[1:] != want:
        return fail(f"results columns are {header[1:]}, want {want}")
    if len(rule) != len(header) or any(len(r) != len(header) for r in data):
        return fail("a results row has the wrong number of cells")
    for i, col in enumerate(want, start=1):
        if not any(NUMBER.match(r[i]) for r in data):
            return fail(f"the '{col}' column has no figure")

    raw = json.loads((work / "out" / "latest.json").read_text())
    if raw["meta"].get("fatal"):
        return fail(f"the run ended early: {raw['meta']['fatal']}")
    mem = raw.get("memory", {})
    if not mem.get("gateway_base", {}).get("base_kb"):
        return fail("no gateway base RSS")
    if not mem.get("agents", {}).get("steps"):
        return fail("the many-agents client reported nothing")
    errors = [r for r in raw["runs"] if r.get("error")]
    for r in errors:
        print(f"note: rep {r['rep']} {r['config']} {r['work']}: {r['error']}")
    print("bench smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
