#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds, runs every CTest suite on this host
# (unit, ofi, and rdma — which says "skipped: no RDMA device" where there is none), then the
# same rdma suite for real inside the Soft-RoCE guest (tests/rxe). Ends with one summary line;
# exit status non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh || exit 1
scripts/build.sh || exit 1
BUILD=${VIADUCT_BUILD_DIR:-build}
LOGS=$(mktemp -d)

echo "=== host: ctest (labels unit, ofi, rdma)"
# Label faults (`viaduct bench faults` smoke test) is run by hand for now: ctest -L faults.
(cd "$BUILD" && timeout 1800 ctest --output-on-failure --timeout 300 -j2 -LE faults) 2>&1 | tee "$LOGS/host.log"
host_rc=${PIPESTATUS[0]}

echo "=== Soft-RoCE guest: ctest -L rdma on rdma_rxe, once per topology (dummy, pair)"
timeout 600 tests/rxe/rxevm.sh -t 520 -- sh tests/rxe/run-verbs-tests.sh "$BUILD" 2>&1 |
  tee "$LOGS/guest.log"
guest_rc=${PIPESTATUS[0]}

# ctest: "N% tests passed, F tests failed out of T"; skipped ones are listed as "(Skipped)".
# The guest runs ctest once per topology: its counts are summed.
ctest_counts() {  # log -> "total failed skipped"
  local total failed skipped
  total=$(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' "$1" | awk '{s+=$1} END {print s+0}')
  failed=$(sed -n 's/.* \([0-9]*\) tests failed out of.*/\1/p' "$1" | awk '{s+=$1} END {print s+0}')
  skipped=$(grep -c '(Skipped)' "$1" || true)
  echo "$total $failed ${skipped:-0}"
}
read -r host_total host_failed host_skipped < <(ctest_counts "$LOGS/host.log")
read -r guest_total guest_failed guest_skipped < <(ctest_counts "$LOGS/guest.log")
host_passed=$((host_total - host_failed - host_skipped))
guest_passed=$((guest_total - guest_failed - guest_skipped))
echo "host: $host_passed passed, $host_failed failed, $host_skipped skipped (rdma tests skip: no RDMA device on the host)"
echo "guest (Soft-RoCE, ctest -L rdma): $guest_passed passed, $guest_failed failed, $guest_skipped skipped"
passed=$((host_passed + guest_passed))
failed=$((host_failed + guest_failed))
# A run that died before its summary (timeout, crash) counts as a failure.
[ "$host_rc" -eq 0 ] || [ "$failed" -gt 0 ] || failed=1
[ "$guest_rc" -eq 0 ] || [ "$failed" -gt 0 ] || failed=1
[ "$guest_total" -gt 0 ] || [ "$failed" -gt 0 ] || failed=1
echo "tests: $passed passed, $failed failed, $((host_skipped + guest_skipped)) skipped"
rm -rf "$LOGS"
[ "$host_rc" -eq 0 ] && [ "$guest_rc" -eq 0 ]
