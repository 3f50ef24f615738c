#!/usr/bin/env bash
# The main job: installs and builds what it needs, then runs the cache cluster demo on the
# embedded defaults (SQLite, ofi+tcp, 127.0.0.1): a master, two failover groups of two data
# servers, a checked client load; a data server SIGKILLed under the load and restarted later.
# Prints the timeline of every process and the summary (0 errors, 0 stale reads, nothing
# acknowledged lost), draws it ($BUILD/cluster-demo.png); exits non-zero if anything did not hold.
#   scripts/demo.sh --pair   also: transport perf and the active/passive pair killed five times
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh >/dev/null
BUILD=${VIADUCT_BUILD_DIR:-build}
VIADUCT=$BUILD/tools/viaduct

echo "=== the cache cluster: a data server killed and restarted under load"
"$VIADUCT" demo --png "$BUILD/cluster-demo.png" --json "$BUILD/cluster-demo.json"
[ "${1:-}" = "--pair" ] || exit 0

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
