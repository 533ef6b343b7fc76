#!/usr/bin/env bash
# Interactive latency beside a bulk transfer over a slow agent link.
#
#   bench/slowlink.sh [RATE]          (default 20mbit; needs root or user namespaces)
#
# Loopback is far faster than the links agents sit behind (DSL, 4G, hotel
# Wi-Fi). There, the kernel's send buffer of the one agent connection grows to
# megabytes during a bulk transfer, and every other stream's bytes queue
# behind it. This script makes such a link: in a private network namespace it
# shapes both directions of the agent connection (the gateway port) to RATE
# with an htb class, runs a gateway and an agent from configuration files,
# and measures 64-byte round trips through one tunnel while another carries a
# bulk download, then a bulk upload, for each `socket_unsent` setting (0 =
# the kernel's default, unbounded; then "default": the key left out, so
# muxgate's own default applies). Results go to
# stdout as Markdown and the raw JSON lines to bench/out/slowlink-<time>/.
# Not part of the test suite (timings).
#
# The shaped link's own queue (the qdisc, about 256 KiB per connection with
# Linux's TCP small queues) adds the same delay to every setting: at 20 Mbit/s
# that is ~105 ms, the floor of what the table shows.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RATE=${1:-20mbit}
BIN=${BENCH_BUILD_DIR:-build}/bin
if [[ -z "${SLOWLINK_INNER:-}" ]]; then
    [[ -x $BIN/muxgate && -x $BIN/muxgate-agent ]] || { echo "slowlink: build first (cmake --build build)" >&2; exit 2; }
    command -v tc >/dev/null || { echo "slowlink: needs tc (apt install iproute2)" >&2; exit 2; }
    OUT=$ROOT/bench/out/slowlink-$(date -u +%Y%m%d-%H%M%S)
    mkdir -p "$OUT"
    gcc -O2 -pthread -o "$OUT/mgbench" bench/tools/mgbench.c -lm
    if [[ $(id -u) == 0 ]]; then
        exec env SLOWLINK_INNER=1 OUT="$OUT" unshare -n "$0" "$RATE"
    fi
    exec env SLOWLINK_INNER=1 OUT="$OUT" unshare -r -n "$0" "$RATE"
fi

PORT=8443
ip link set lo up
# An explicit quantum (one 64 KiB loopback segment) instead of rate / r2q,
# which htb warns about for a 20 Gbit/s class.
tc qdisc add dev lo root handle 1: htb default 10
tc class add dev lo parent 1: classid 1:10 htb rate 20gbit quantum 65536
tc class add dev lo parent 1: classid 1:1 htb rate "$RATE" quantum 65536
tc class add dev lo parent 1: classid 1:2 htb rate "$RATE" quantum 65536
tc filter add dev lo parent 1: protocol ip u32 match ip sport $PORT 0xffff flowid 1:1
tc filter add dev lo parent 1: protocol ip u32 match ip dport $PORT 0xffff flowid 1:2

# wait_for WHAT SECONDS TEST...: poll TEST every 0.1 s; fail naming WHAT.
wait_for() {
    local what=$1 n=$(( $2 * 10 )); shift 2
    for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done
    echo "slowlink: $what did not happen within ${n}00 ms" >&2
    exit 1
}

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

"$OUT/mgbench" serve >"$OUT/ports.json" & PIDS+=($!)
wait_for "mgbench serve writing $OUT/ports.json" 5 test -s "$OUT/ports.json"
port() { /usr/bin/python3 -c "import json,sys;print(json.load(open('$OUT/ports.json'))['$1'])"; }
ECHO=$(port echo); SRC=$(port source); SINK=$(port sink)
TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
HASH=$(printf '%s\n' "$TOKEN" | "$BIN/muxgate" token hash | sed -n 's/.*"\(sha256:[0-9a-f]*\)".*/\1/p')
printf '%s\n' "$TOKEN" >"$OUT/agent.token"

median() { /usr/bin/python3 -c "import json,sys;v=sorted(json.loads(l)['$2'] for l in open('$1') if l.strip());print('%.1f'%(v[len(v)//2]/1000))"; }
bulk() { /usr/bin/python3 -c "import json;v=[json.loads(l).get('bulk_gbps',0)*1000 for l in open('$1') if l.strip()];print('%.1f'%(sum(v)/len(v)))"; }

echo "| socket_unsent | idle p50 (ms) | beside a download: p50 / p99 (ms) | download (Mbit/s) | beside an upload: p50 / p99 (ms) | upload (Mbit/s) |"
echo "|---|---:|---:|---:|---:|---:|"
for UNSENT in 0 default; do
    if [[ $UNSENT == default ]]; then LIM=""; else LIM="socket_unsent = $UNSENT"; fi
    cat >"$OUT/gateway.toml" <<EOF
[gateway]
listen = "127.0.0.1:$PORT"
public_bind = "127.0.0.1"
[tls]
cert = "$OUT/cert.pem"
key = "$OUT/key.pem"
self_signed = true
[auth]
shared_token_hash = "$HASH"
[limits]
$LIM
EOF
    cat >"$OUT/agent.toml" <<EOF
[agent]
name = "slowlink"
gateway = "wss://127.0.0.1:$PORT/muxgate"
token_file = "$OUT/agent.token"
ca = "$OUT/cert.pem"
[limits]
$LIM
[[tunnel]]
name = "echo"
protocol = "tcp"
remote_port = 20001
local = "127.0.0.1:$ECHO"
[[tunnel]]
name = "source"
protocol = "tcp"
remote_port = 20002
local = "127.0.0.1:$SRC"
[[tunnel]]
name = "sink"
protocol = "tcp"
remote_port = 20003
local = "127.0.0.1:$SINK"
EOF
    "$BIN/muxgate" --config "$OUT/gateway.toml" >"$OUT/gateway-$UNSENT.log" 2>&1 & GW=$!
    wait_for "the gateway writing its certificate (log: $OUT/gateway-$UNSENT.log)" 5 test -s "$OUT/cert.pem"
    "$BIN/muxgate-agent" --config "$OUT/agent.toml" >"$OUT/agent-$UNSENT.log" 2>&1 & AG=$!
    PIDS+=("$GW" "$AG")
    wait_for "the agent opening its tunnels (log: $OUT/agent-$UNSENT.log)" 10 \
        grep -q "20003" "$OUT/agent-$UNSENT.log"
    R=$OUT/unsent-$UNSENT
    : >"$R-idle.json"; : >"$R-down.json"; : >"$R-up.json"
    for rep in 1 2 3; do
        "$OUT/mgbench" ping 127.0.0.1 20001 --duration 2 --max 500 >>"$R-idle.json"
        "$OUT/mgbench" ping 127.0.0.1 20001 --duration 10 --ramp 3 --bulk down --bulk-port 20002 >>"$R-down.json"
        "$OUT/mgbench" ping 127.0.0.1 20001 --duration 10 --ramp 3 --bulk up --bulk-port 20003 >>"$R-up.json"
    done
    kill "$AG" "$GW"; wait "$AG" "$GW" 2>/dev/null || true
    rm -f "$OUT/cert.pem" "$OUT/key.pem"
    echo "| $UNSENT | $(median "$R-idle.json" p50_us) | $(median "$R-down.json" p50_us) / $(median "$R-down.json" p99_us) | $(bulk "$R-down.json") | $(median "$R-up.json" p50_us) / $(median "$R-up.json" p99_us) | $(bulk "$R-up.json") |"
done
echo
echo "Link: $RATE each way (htb on the gateway port, private network namespace); 3 repetitions, medians. Raw: $OUT"
