#!/usr/bin/env bash
# Command two of the README: install what is missing, build, and run the
# whole test suite: unit and integration tests on a Release build, the same
# again under ASan+UBSan (clang), then every fuzz target for a bounded time.
#
#   TEST_QUICK=1     Release build and its tests only
#   FUZZ_SECONDS=N   seconds per fuzz target (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh --test
jobs=$(nproc)
ctest_args=(--output-on-failure --no-tests=error -j "$jobs" --timeout 900)

echo "== Release build (g++)"
scripts/build.sh release
ctest --test-dir build "${ctest_args[@]}"

if [[ -n "${TEST_QUICK:-}" ]]; then exit 0; fi

echo "== ASan+UBSan build (clang)"
scripts/build.sh asan
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
ctest --test-dir build-asan "${ctest_args[@]}" -LE slow

echo "== Fuzz targets (libFuzzer)"
scripts/build.sh fuzz
FUZZ_SECONDS="${FUZZ_SECONDS:-60}" ctest --test-dir build-fuzz --output-on-failure -L fuzz
echo "all tests passed"
