#!/usr/bin/env bash
# The main job: installs and builds what it needs, starts a viaduct server and runs a client load
# against it over ofi+tcp on 127.0.0.1, printing latency, message rate and bandwidth.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh >/dev/null
BUILD=${VIADUCT_BUILD_DIR:-build}
out=$(mktemp)
"$BUILD/tools/viaduct" perf server --listen ofi+tcp://127.0.0.1:0 >"$out" &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
uri=$(awk '/listening/{print $2}' "$out")
echo "server: $uri (pid $server)"
"$BUILD/tools/viaduct" perf client --connect "$uri" --sizes 64,4096,65536 --iterations 20000 --seconds 1
