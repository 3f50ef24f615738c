#!/usr/bin/env bash
# The main job: installs and builds what it needs, then on 127.0.0.1 over ofi+tcp
#  1. measures a server and a client (latency, message rate, bandwidth), and
#  2. runs the failover demo: an active/passive pair of `viaduct serve`, a steady client load
#     through a failover session, the active killed (SIGKILL) — five times — printing the stall the
#     application saw and the number of failed requests (0).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh >/dev/null
BUILD=${VIADUCT_BUILD_DIR:-build}
VIADUCT=$BUILD/tools/viaduct

echo "=== 1. transport: viaduct perf over ofi+tcp"
out=$(mktemp)
"$VIADUCT" perf server --listen ofi+tcp://127.0.0.1:0 >"$out" &
server=$!
# The server may have exited already: neither kill may fail the demo (set -e).
trap 'kill $server 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
uri=$(awk '/listening/{print $2}' "$out")
"$VIADUCT" perf client --connect "$uri" --sizes 64,4096,65536 --iterations 20000 --seconds 1
kill $server 2>/dev/null || true
wait $server 2>/dev/null || true

echo
echo "=== 2. failover: active killed under load (ofi+tcp, 127.0.0.1)"
"$VIADUCT" bench failover --mode kill --trials 5 --json "$BUILD/failover-demo.json" \
  --plot "$BUILD/failover-demo.png"
