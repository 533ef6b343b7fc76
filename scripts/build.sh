#!/usr/bin/env bash
# Configures and builds one flavour of muxgate:
#   scripts/build.sh            Release with g++ into build/
#   scripts/build.sh asan       clang, ASan+UBSan into build-asan/
#   scripts/build.sh fuzz       clang, libFuzzer targets (+ASan) into build-fuzz/
set -euo pipefail
cd "$(dirname "$0")/.."

flavour="${1:-release}"
jobs="${JOBS:-$(nproc)}"
case "$flavour" in
  release) dir=build; args=(-DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=g++ -DCMAKE_C_COMPILER=gcc) ;;
  asan) dir=build-asan; args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++
                              -DCMAKE_C_COMPILER=clang -DMUXGATE_SANITIZE=ON) ;;
  fuzz) dir=build-fuzz; args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++
                              -DCMAKE_C_COMPILER=clang -DMUXGATE_FUZZ=ON -DMUXGATE_TESTS=ON) ;;
  *) echo "usage: $0 [release|asan|fuzz]" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" -G Ninja "${args[@]}" >/dev/null
cmake --build "$dir" -j "$jobs"
echo "built $flavour in $dir/"
