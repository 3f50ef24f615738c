#!/usr/bin/env bash
# `viaduct bench failover` over verbs:// on Soft-RoCE: an active/passive pair of `viaduct serve` on
# one rxe device (dummy netdev, 10.77.0.1), a steady request stream, the active killed (SIGKILL)
# and frozen (SIGSTOP). The lookup is UDP on the guest's 127.0.0.1.
# Runs INSIDE tests/rxe's guest; started on the host it boots the guest and runs itself there:
#   bench/rxe_failover.sh [--build DIR] [--trials N]
# Text and JSON per mode; the JSON files go to the run folder that outlives the guest
# ($VIADUCT_RXEVM_OUT, by default BUILD/bench/rxe-vm).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=build TRIALS=10
args=("$@")
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --trials) TRIALS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -z "${VIADUCT_RXEVM:-}" ]; then  # on the host: run this script inside the guest
  export VIADUCT_RXEVM_OUT=${VIADUCT_RXEVM_OUT:-$BUILD/bench/rxe-vm}
  exec tests/rxe/rxevm.sh -t 500 -- bench/rxe_failover.sh "${args[@]}"
fi
VIADUCT=$BUILD/tools/viaduct
[ -x "$VIADUCT" ] || { echo "$VIADUCT missing: build first" >&2; exit 1; }
[ -e /sys/class/infiniband/rxe0 ] || sh tests/rxe/guest-rxe-up.sh dummy >/dev/null || exit 1
out=${VIADUCT_RXEVM_RUN:-${VIADUCT_RXEVM_OUT:-/tmp}}
# TCG emulation runs the guest many times slower than hardware and pauses it for up to ~30 ms
# (the bench's "before the failure" gaps show it): a 30 ms takeover deadline (the default) then
# fires on a healthy active. 100 ms keeps partners from taking over on emulation hiccups.
export VIADUCT_PARTNER_TAKEOVER_AFTER_MS=${VIADUCT_PARTNER_TAKEOVER_AFTER_MS:-100}
rc=0
for mode in kill stop; do
  echo "== viaduct bench failover --transport verbs://10.77.0.1 --mode $mode --trials $TRIALS"
  timeout 200 "$VIADUCT" bench failover --transport verbs://10.77.0.1 --mode "$mode" \
    --trials "$TRIALS" --json "$out/rxe_failover_$mode.json" || rc=1
done
exit $rc
