#!/usr/bin/env bash
# False takeovers on a busy host: a CPU hog of twice the cores (stress-ng --cpu 2N) runs beside an
# idle pair and a loaded pair (viaduct bench failover --mode none), both at the default takeover
# deadline, for --seconds S. Any takeover is a false one. Prints one summary line and JSON.
#   bench/busy_host.sh [--seconds 600] [--hog N] [--json FILE] [--build DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_RUN=600 HOG=$((2 * $(nproc))) JSON="" BUILD=${VIADUCT_BUILD_DIR:-build}
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_RUN=$2; shift 2 ;;
    --hog) HOG=$2; shift 2 ;;
    --json) JSON=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    *) echo "usage: $0 [--seconds S] [--hog N] [--json FILE] [--build DIR]" >&2; exit 2 ;;
  esac
done
V=$BUILD/tools/viaduct
command -v stress-ng >/dev/null || { echo "busy_host: stress-ng is not installed" >&2; exit 2; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
"$V" keygen "$work/key"
stress-ng --cpu "$HOG" --timeout "$((SECONDS_RUN + 30))s" >/dev/null 2>&1 &
"$V" serve --name IDLE --role active --listen ofi+tcp://127.0.0.1:33100 \
  --partner ofi+tcp://127.0.0.1:33101 --lookup 127.0.0.1:33102 --cluster-key "$work/key" \
  >"$work/a.log" 2>&1 &
"$V" serve --name IDLE --role passive --listen ofi+tcp://127.0.0.1:33101 \
  --partner ofi+tcp://127.0.0.1:33100 --lookup 127.0.0.1:33103 --cluster-key "$work/key" \
  >"$work/b.log" 2>&1 &
"$V" bench failover --mode none --seconds "$SECONDS_RUN" --base-port 31200 \
  --json "$work/loaded.json" >"$work/loaded.log" 2>&1
loaded_rc=$?
idle_false=$(cat "$work/a.log" "$work/b.log" | grep -c "took-over")
loaded_false=1
[ -f "$work/loaded.json" ] && loaded_false=$(grep -c '"false_takeover": true' "$work/loaded.json")
load_line=$(grep -m1 -i "false takeover" "$work/loaded.log")
echo "busy-host: hog $HOG cpus, $SECONDS_RUN s, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  idle pair: host stalls seen $(cat "$work/a.log" "$work/b.log" | grep -c "host-stall") ($(grep -h -o 'host-stall [^ ]* [0-9]* ms' "$work/a.log" "$work/b.log" | awk '{print $3}' | sort -n | tail -1) ms longest)"
echo "  idle pair: took-over lines $idle_false; roles: $(grep -h -E 'took-over|stepped-down|takeover-refused|serving-alone' "$work/a.log" "$work/b.log" | head -3 | tr '\n' ';')"
echo "  loaded pair: $load_line (bench rc $loaded_rc)"
if [ -n "$JSON" ]; then
  printf '{"seconds": %s, "hog_cpus": %s, "idle_false_takeovers": %s, "loaded_false_takeover": %s, "loaded": %s}\n' \
    "$SECONDS_RUN" "$HOG" "$idle_false" "$loaded_false" "$(cat "$work/loaded.json" 2>/dev/null || echo null)" >"$JSON"
fi
total=$((idle_false + loaded_false))
echo "busy-host: false takeovers $total"
[ "$total" -eq 0 ] && [ "$loaded_rc" -eq 0 ]
