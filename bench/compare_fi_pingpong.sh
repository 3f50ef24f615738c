#!/usr/bin/env bash
# viaduct's channel against fi_pingpong (libfabric tcp provider, FI_EP_MSG), same sizes, same run.
# Both sides busy-poll, client and server are separate processes on 127.0.0.1, and the two tools
# alternate round by round so machine noise hits both alike; the medians of the rounds are compared.
#
#   bench/compare_fi_pingpong.sh [--build DIR] [--rounds N] [--iterations N] [--json FILE]
# Prints a table and writes JSON (default: BUILD/bench/compare_fi_pingpong.json).
set -euo pipefail
BUILD=build ROUNDS=5 ITER=20000 SIZES="64 4096 65536" JSON=""
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --iterations) ITER=$2; shift 2 ;;
    --sizes) SIZES=$2; shift 2 ;;
    --json) JSON=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
VIADUCT=$BUILD/tools/viaduct
JSON=${JSON:-$BUILD/bench/compare_fi_pingpong.json}
command -v fi_pingpong >/dev/null || { echo "fi_pingpong missing: apt-get install libfabric-bin" >&2; exit 1; }
[ -x "$VIADUCT" ] || { echo "$VIADUCT missing: build first" >&2; exit 1; }

port=$((20000 + RANDOM % 20000))
fi_round() {  # size -> one-way usec (fi_pingpong's usec/xfer)
  port=$((port + 1))
  timeout 60 fi_pingpong -p tcp -e msg -I "$ITER" -S "$1" -B "$port" >/dev/null 2>&1 &
  local srv=$!
  sleep 0.3
  timeout 60 fi_pingpong -p tcp -e msg -I "$ITER" -S "$1" -P "$port" 127.0.0.1 2>/dev/null |
    awk 'NR == 2 {print $7}'  # sizes print as 4k/64k: take the data row
  wait $srv || true
}
vd_round() {  # size -> one-way usec (half the median round trip)
  local out; out=$(mktemp)
  timeout 120 "$VIADUCT" perf server --listen ofi+tcp://127.0.0.1:0 >"$out" 2>/dev/null &
  local srv=$!
  for _ in $(seq 50); do grep -q listening "$out" && break; sleep 0.05; done
  local uri; uri=$(awk '/listening/{print $2}' "$out")
  timeout 120 "$VIADUCT" perf client --connect "$uri" --tests lat --sizes "$1" \
    --iterations "$ITER" --json 2>/dev/null | jq -r '.results[] | select(.one_way_us) | .one_way_us'
  kill "$srv" 2>/dev/null; wait "$srv" 2>/dev/null || true
  rm -f "$out"
}
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

printf '%-8s %14s %14s %8s   (one-way us, median of %d rounds x %d iterations)\n' \
  size fi_pingpong viaduct ratio "$ROUNDS" "$ITER"
entries=()
for size in $SIZES; do
  fi_vals=() vd_vals=()
  for _ in $(seq "$ROUNDS"); do
    fi_vals+=("$(fi_round "$size")")
    vd_vals+=("$(vd_round "$size")")
  done
  fi_med=$(printf '%s\n' "${fi_vals[@]}" | grep -E '^[0-9.]+$' | median)
  vd_med=$(printf '%s\n' "${vd_vals[@]}" | grep -E '^[0-9.]+$' | median)
  ratio=$(awk -v a="$vd_med" -v b="$fi_med" 'BEGIN {if (b > 0) printf "%.3f", a / b; else print "nan"}')
  printf '%-8s %14s %14s %8s\n' "$size" "$fi_med" "$vd_med" "$ratio"
  entries+=("{\"size_bytes\": $size, \"fi_pingpong_one_way_us\": $fi_med, \"viaduct_one_way_us\": $vd_med, \"ratio\": $ratio, \"fi_pingpong_rounds\": [$(IFS=,; echo "${fi_vals[*]}")], \"viaduct_rounds\": [$(IFS=,; echo "${vd_vals[*]}")]}")
done
mkdir -p "$(dirname "$JSON")"
{ printf '{"provider": "tcp", "endpoint": "FI_EP_MSG", "rounds": %d, "iterations": %d, "results": [' "$ROUNDS" "$ITER"
  (IFS=,; printf '%s' "${entries[*]}"); printf ']}\n'; } > "$JSON"
echo "json: $JSON"
