#!/usr/bin/env bash
# Command one of the README: install what is missing, build, and run a
# gateway and an agent on loopback with a generated self-signed certificate,
# exposing a small demo web page through a TCP tunnel. Ctrl-C stops it.
#
#   DEMO_SECONDS=N   stop by itself after N seconds (default: run until Ctrl-C)
#   DEMO_GATEWAY_PORT, DEMO_PUBLIC_PORT, DEMO_SERVICE_PORT to move the ports
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

scripts/deps.sh --demo
scripts/build.sh release

gw_port="${DEMO_GATEWAY_PORT:-8443}"
pub_port="${DEMO_PUBLIC_PORT:-20080}"
svc_port="${DEMO_SERVICE_PORT:-18080}"
run=$(mktemp -d /tmp/muxgate-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# The local service the tunnel exposes: a static page on loopback.
mkdir -p "$run/www"
cat > "$run/www/index.html" <<HTML
<!doctype html><title>muxgate demo</title>
<h1>Hello through muxgate</h1>
<p>This page is served on 127.0.0.1:$svc_port behind the agent and reached
through one TLS WebSocket to the gateway.</p>
HTML
/usr/bin/python3 -m http.server "$svc_port" --bind 127.0.0.1 --directory "$run/www" \
  >"$run/service.log" 2>&1 &
pids+=($!)

# A fresh token; the gateway keeps only its hash.
token=$(build/bin/muxgate token new | sed -n '2p' | tr -d ' ')
hash=$(printf '%s\n' "$token" | build/bin/muxgate token hash | sed 's/.*"\(.*\)"/\1/')
printf '%s\n' "$token" > "$run/agent.token"
chmod 600 "$run/agent.token"

# The embedded default configuration.
cat > "$run/gateway.toml" <<TOML
[gateway]
listen = "127.0.0.1:$gw_port"
public_bind = "127.0.0.1"

[tls]
self_signed = true
cert = "$run/cert.pem"
key = "$run/key.pem"

[[agent]]
name = "demo"
token_hash = "$hash"
protocols = ["tcp"]
ports = ["$pub_port"]
TOML
cat > "$run/agent.toml" <<TOML
[agent]
name = "demo"
gateway = "wss://127.0.0.1:$gw_port"
token_file = "$run/agent.token"
ca = "$run/cert.pem"

[[tunnel]]
name = "web"
protocol = "tcp"
remote_port = $pub_port
local = "127.0.0.1:$svc_port"
TOML

build/bin/muxgate --config "$run/gateway.toml" >"$run/gateway.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -s "$run/cert.pem" ]] && break; sleep 0.05; done
build/bin/muxgate-agent --config "$run/agent.toml" >"$run/agent.log" 2>&1 &
pids+=($!)

ok=""
for _ in $(seq 100); do
  if curl -fsS -m 2 "http://127.0.0.1:$pub_port/" >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.1
done
if [[ -z "$ok" ]]; then
  echo "demo: the tunnel did not come up; logs:" >&2
  cat "$run/gateway.log" "$run/agent.log" >&2
  exit 1
fi
fp=$(grep -o 'fingerprint [0-9A-F:]*' "$run/gateway.log" | head -1 | cut -d' ' -f2)
cat <<MSG

muxgate demo is running on loopback:
  gateway   wss://127.0.0.1:$gw_port/muxgate (self-signed, SHA-256 $fp)
  agent     "demo", verifying the gateway with $run/cert.pem
  tunnel    "web": public 127.0.0.1:$pub_port  ->  agent  ->  127.0.0.1:$svc_port

Connect to it:
  curl http://127.0.0.1:$pub_port/
  (or open http://127.0.0.1:$pub_port/ in a browser)

Logs: $run/gateway.log and $run/agent.log
Ctrl-C stops everything.
MSG
curl -sS "http://127.0.0.1:$pub_port/" | sed -n 's/<h1>\(.*\)<\/h1>/  page says: \1/p'

if [[ -n "${DEMO_SECONDS:-}" ]]; then
  sleep "$DEMO_SECONDS"
else
  while kill -0 "${pids[1]}" 2>/dev/null && kill -0 "${pids[2]}" 2>/dev/null; do sleep 1; done
  echo "demo: a process exited; logs:" >&2
  tail -n 20 "$run/gateway.log" "$run/agent.log" >&2
  exit 1
fi
