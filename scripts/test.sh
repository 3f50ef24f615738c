#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds, runs every CTest suite on this host
# (unit, ofi, and rdma — which says "skipped: no RDMA device" where there is none), then the
# verbs suites for real inside the Soft-RoCE guest (tests/rxe). Ends with one summary line;
# exit status non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh || exit 1
scripts/build.sh || exit 1
BUILD=${VIADUCT_BUILD_DIR:-build}
LOGS=$(mktemp -d)

echo "=== host: ctest (labels unit, ofi, rdma)"
(cd "$BUILD" && timeout 1800 ctest --output-on-failure --timeout 300 -j2) 2>&1 | tee "$LOGS/host.log"
host_rc=${PIPESTATUS[0]}

echo "=== Soft-RoCE guest: verbs suites on rdma_rxe"
timeout 600 tests/rxe/rxevm.sh -t 520 -- sh tests/rxe/run-verbs-tests.sh \
  "$BUILD/tests/transport_verbs_test" "$BUILD/tests/transport_ofi_test" 2>&1 | tee "$LOGS/guest.log"
guest_rc=${PIPESTATUS[0]}

# ctest: "N% tests passed, F tests failed out of T"; skipped ones are listed as "(Skipped)".
host_total=$(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' "$LOGS/host.log" | tail -1)
host_failed=$(sed -n 's/.* \([0-9]*\) tests failed out of.*/\1/p' "$LOGS/host.log" | tail -1)
host_skipped=$(grep -c '(Skipped)' "$LOGS/host.log" || true)
guest_passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$LOGS/guest.log" | awk '{s+=$1} END {print s+0}')
guest_failed=$(sed -n 's/^ *\([0-9]*\) FAILED TEST.*/\1/p' "$LOGS/guest.log" | awk '{s+=$1} END {print s+0}')
guest_skipped=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$LOGS/guest.log" | awk '{s+=$1} END {print s+0}')
host_total=${host_total:-0} host_failed=${host_failed:-0}
echo "host: $((host_total - host_failed - host_skipped)) passed, $host_failed failed, $host_skipped skipped (rdma tests skip: no RDMA device on the host)"
echo "guest (Soft-RoCE): $guest_passed passed, $guest_failed failed, $guest_skipped skipped (topology-specific tests skip in the other topology)"
passed=$((host_total - host_failed - host_skipped + guest_passed))
failed=$((host_failed + guest_failed))
[ "$host_rc" -eq 0 ] || [ "$failed" -gt 0 ] || failed=1
[ "$guest_rc" -eq 0 ] || [ "$failed" -gt 0 ] || failed=1
echo "tests: $passed passed, $failed failed, $((host_skipped + guest_skipped)) skipped"
rm -rf "$LOGS"
[ "$host_rc" -eq 0 ] && [ "$guest_rc" -eq 0 ]
