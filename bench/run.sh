#!/usr/bin/env bash
# The benchmark in one command (see bench/README.md):
#
#   bench/run.sh [--quick | --full | --smoke] [--only LIST] [--reps N] [--note TEXT]
#
# Installs what is missing (scripts/deps.sh --test: iperf3, OpenSSH, wrk,
# nginx-light, ...), builds muxgate in Release into build/ if needed, then runs
# bench/bench.py, which starts everything on loopback, measures, stops it all
# and writes bench/RESULTS.md (raw JSON and logs under bench/out/).
#
#   BENCH_BUILD_DIR=dir   build and use another build directory (default build)
#   BENCH_NO_DEPS=1       do not run scripts/deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${BENCH_NO_DEPS:-}" ]]; then scripts/deps.sh --test; fi

build="${BENCH_BUILD_DIR:-build}"
generator=()
[[ -f "$build/CMakeCache.txt" ]] || generator=(-G Ninja)
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
# Only what the benchmark runs: a test someone is halfway through writing
# should not stop a benchmark.
cmake --build "$build" --target muxgate muxgate-agent muxgate_tcp

exec /usr/bin/python3 bench/bench.py --bin-dir "$build/bin" "$@"
