#!/usr/bin/env bash
# Installs what muxgate needs to build and test on Debian 12, and nothing
# that is already there. Safe to run again. Non-interactive (CI=true works).
set -euo pipefail

build_pkgs=(
  g++ cmake ninja-build pkg-config
  libboost1.81-dev libboost-json1.81-dev
  libssl-dev libsimdjson-dev libssh-dev libfmt-dev libspdlog-dev
  libtomlplusplus-dev doctest-dev
)
# The test suite: real third-party programs, plus clang for the sanitizer
# and fuzz builds.
test_pkgs=(
  clang libclang-rt-14-dev llvm
  python3 python3-websockets
  iperf3 socat netcat-openbsd curl tinyproxy
  openssh-client openssh-server openssh-sftp-server wrk nginx-light
  procps iproute2 psmisc tmux
  # RDP: FreeRDP's client and shadow server, its password hash tool, an X
  # server without a screen, and a tool to compare screenshots.
  freerdp2-x11 freerdp2-shadow-x11 winpr-utils xvfb xauth x11-apps imagemagick
)

want=("${build_pkgs[@]}")
if [[ "${1:-}" == "--test" ]]; then want+=("${test_pkgs[@]}"); fi
if [[ "${1:-}" == "--demo" ]]; then want+=(python3 curl); fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  echo "deps: everything is installed"
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
echo "deps: installing ${missing[*]}"
apt_install() {
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
}
if ! apt_install; then
  "${sudo[@]}" apt-get update -q
  apt_install
fi
