#!/usr/bin/env bash
# viaduct's channel over verbs:// against perftest (ib_send_lat -R, ib_write_lat -R) on Soft-RoCE.
# Runs INSIDE tests/rxe's guest; started on the host it boots the guest and runs itself there:
#   bench/rxe_compare.sh [--build DIR] [--rounds N] [--iterations N] [--size BYTES]
# Server and client are two busy-polling processes on one rxe device (dummy netdev, 10.77.0.1),
# one per vCPU; the tools alternate round by round and the medians of the rounds are compared.
# perftest needs -R to connect through rdma_cm (the device has no IPoIB/TCP exchange of its own).
# Prints a table and JSON; the JSON is also written to $VIADUCT_RXEVM_OUT/rxe_compare.json (the
# run folder that outlives the guest; the host default is BUILD/bench/rxe-vm).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=build ROUNDS=3 ITER=5000 SIZE=64
args=("$@")
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --iterations) ITER=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -z "${VIADUCT_RXEVM:-}" ]; then  # on the host: run this script inside the guest
  export VIADUCT_RXEVM_OUT=${VIADUCT_RXEVM_OUT:-$BUILD/bench/rxe-vm}
  exec tests/rxe/rxevm.sh -t 400 -- bench/rxe_compare.sh "${args[@]}"
fi
VIADUCT=$BUILD/tools/viaduct
HOST=10.77.0.1
[ -x "$VIADUCT" ] || { echo "$VIADUCT missing: build first" >&2; exit 1; }
[ -e /sys/class/infiniband/rxe0 ] || sh tests/rxe/guest-rxe-up.sh dummy >/dev/null || exit 1

echo "== viaduct info (back ends and devices)"
timeout 30 "$VIADUCT" info | sed -n '/^back ends/,/^$/p'
timeout 30 "$VIADUCT" info | grep -A3 '^ *verbs://' | grep -q 'rxe0' ||
  { echo "viaduct info does not list rxe0 under verbs://" >&2; exit 1; }

port=$((20000 + RANDOM % 20000))
perftest_round() {  # tool -> one-way usec (t_typical, the median)
  port=$((port + 1))
  timeout 60 "$1" -R -F -s "$SIZE" -n "$ITER" -p "$port" >/dev/null 2>&1 &
  local srv=$!
  sleep 1
  timeout 60 "$1" -R -F -s "$SIZE" -n "$ITER" -p "$port" "$HOST" 2>/dev/null |
    awk -v s="$SIZE" '$1 == s && NF >= 6 {print $5}'
  wait $srv 2>/dev/null || true
}
viaduct_round() {  # -> "one_way rtt_p50 rtt_p99" usec (one-way = half the median round trip)
  local out; out=$(mktemp -p "${VIADUCT_RXEVM_RUN:-/run}")
  timeout 120 "$VIADUCT" perf server --listen "verbs://$HOST:0" >"$out" 2>/dev/null &
  local srv=$!
  for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.1; done
  local uri; uri=$(awk '/listening/{print $2}' "$out")
  timeout 120 "$VIADUCT" perf client --connect "$uri" --tests lat --sizes "$SIZE" \
    --iterations "$ITER" --json 2>/dev/null |
    awk -F': ' '/"(one_way_us|rtt_p50_us|rtt_p99_us)"/ {gsub(/[ ,"]/, "", $1); gsub(/[ ,]/, "", $2); v[$1] = $2}
                END {print v["one_way_us"], v["rtt_p50_us"], v["rtt_p99_us"]}'
  kill "$srv" 2>/dev/null; wait "$srv" 2>/dev/null || true
  rm -f "$out"
}
median() { grep -E '^[0-9.]+$' | sort -g | awk '{a[NR]=$1} END {if (NR==0) print "null"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

send=() write=() vd=() p50=() p99=()
for r in $(seq "$ROUNDS"); do
  send+=("$(perftest_round ib_send_lat)")
  # no /dev/fd in the guest: no process substitution
  vd_out=$(viaduct_round)
  read -r ow rp50 rp99 <<<"$vd_out"
  vd+=("$ow") p50+=("$rp50") p99+=("$rp99")
  write+=("$(perftest_round ib_write_lat)")
  echo "round $r: ib_send_lat -R ${send[-1]}  viaduct ${vd[-1]} (rtt p50 $rp50 p99 $rp99)  ib_write_lat -R ${write[-1]}"
done
send_med=$(printf '%s\n' "${send[@]}" | median)
write_med=$(printf '%s\n' "${write[@]}" | median)
vd_med=$(printf '%s\n' "${vd[@]}" | median)
p50_med=$(printf '%s\n' "${p50[@]}" | median)
p99_med=$(printf '%s\n' "${p99[@]}" | median)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "null"}'; }
r_send=$(ratio "$vd_med" "$send_med") r_write=$(ratio "$vd_med" "$write_med")
printf '\n%-6s %18s %18s %18s %14s %14s   (one-way us, median of %d rounds x %d iterations)\n' \
  size "ib_send_lat -R" "ib_write_lat -R" "viaduct verbs://" "vd/send_lat" "vd/write_lat" "$ROUNDS" "$ITER"
printf '%-6s %18s %18s %18s %14s %14s\n' "$SIZE" "$send_med" "$write_med" "$vd_med" "$r_send" "$r_write"
list() { local IFS=,; echo "$*"; }
json=$(printf '{"where": "Soft-RoCE guest (QEMU TCG), one rxe device, %s", "size_bytes": %s, "rounds": %s, "iterations": %s, "ib_send_lat_R_one_way_us": %s, "ib_write_lat_R_one_way_us": %s, "viaduct_verbs_one_way_us": %s, "viaduct_rtt_p50_us": %s, "viaduct_rtt_p99_us": %s, "ratio_viaduct_over_ib_send_lat_R": %s, "ratio_viaduct_over_ib_write_lat_R": %s, "ib_send_lat_R_rounds": [%s], "ib_write_lat_R_rounds": [%s], "viaduct_rounds": [%s]}' \
  "$HOST" "$SIZE" "$ROUNDS" "$ITER" "$send_med" "$write_med" "$vd_med" "$p50_med" "$p99_med" \
  "$r_send" "$r_write" "$(list "${send[@]}")" "$(list "${write[@]}")" "$(list "${vd[@]}")")
echo "json: $json"
# the guest knows its run folder as VIADUCT_RXEVM_RUN
out=${VIADUCT_RXEVM_RUN:-${VIADUCT_RXEVM_OUT:-}}
[ -n "$out" ] && echo "$json" > "$out/rxe_compare.json" && echo "json file: $out/rxe_compare.json"
exit 0
