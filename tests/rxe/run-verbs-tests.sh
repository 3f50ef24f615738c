#!/bin/sh
# Run INSIDE the test guest: CTest label rdma, once per topology, each run under timeout.
#   sh tests/rxe/run-verbs-tests.sh [BUILD_DIR]      (default: build)
# 1. dummy: one rxe device (10.77.0.1): the VI suite and the channel suite over verbs://.
# 2. pair: two rxe devices joined by a veth wire (10.77.1.2 -> 10.77.1.1): the VI suite, with the
#    tc netem cut and, last, the link-down tests (they rewire the devices before they start).
# A test that only makes sense in one topology is selected out of the other run (ctest -E), so
# every selected test really runs: the guest reports 0 skipped. ctest writes build/Testing into
# the guest's tmpfs overlay; the host's build dir is untouched.
# Exit status: non-zero if either run failed.
build=${1:-build}
# The dummy run carries the channel and failover suites (about 60 tests); the pair run is short.
per_run_timeout=${VIADUCT_RXE_TEST_TIMEOUT_S:-360}
here=$(cd "$(dirname "$0")" && pwd)
rc=0
# TCG emulation runs the guest many times slower than hardware and pauses it for up to ~30 ms
# (the bench's "before the failure" gaps show it): a 30 ms takeover deadline (the default) then
# fires on a healthy active. 100 ms keeps partners from taking over on emulation hiccups.
export VIADUCT_PARTNER_TAKEOVER_AFTER_MS=${VIADUCT_PARTNER_TAKEOVER_AFTER_MS:-100}
cd "$build" || exit 1
# Each test keeps its CTest TIMEOUT; the outer timeout bounds the whole run if ctest itself hangs.
# The tests' "[ measure  ]" lines (detection times) are echoed from ctest's log, which keeps the
# output of passing tests too.
run_ctest() {
  timeout -k 5 "$per_run_timeout" ctest -L rdma --output-on-failure "$@" || rc=1
  grep -h '^\[ measure  \]' Testing/Temporary/LastTest*.log 2>/dev/null
}

sh "$here/guest-rxe-up.sh" dummy > /dev/null || exit 1
echo "== guest ctest -L rdma, topology dummy (one device, 10.77.0.1)"
# Pair-only: the netem cut and the link-down tests need a wire between two devices.
VIADUCT_TEST_VERBS_HOST=10.77.0.1 run_ctest -E 'SilentPeerNetemLoss|LinkDown'

sh "$here/guest-rxe-up.sh" pair > /dev/null || exit 1
echo "== guest ctest -L rdma, topology pair (veth wire, 10.77.1.2 -> 10.77.1.1)"
# Dummy-only: the silent address lives on the dummy subnet; the channel suite and the 64 MiB
# transfer add only time over the wire. ctest runs serially in registration order, which puts
# the link-down tests (last in verbs_vi_test.cpp) after every test that needs a healthy wire.
VIADUCT_TEST_VERBS_HOST=10.77.1.1 VIADUCT_TEST_VERBS_CLIENT_HOST=10.77.1.2 \
  VIADUCT_TEST_VERBS_SILENT_HOST= VIADUCT_TEST_VERBS_NETEM_DEV=va \
  VIADUCT_TEST_VERBS_SERVER_DEV=va VIADUCT_TEST_VERBS_CLIENT_DEV=vb \
  VIADUCT_TEST_VERBS_REWIRE="sh $here/guest-rxe-up.sh pair-rewire" \
  run_ctest -E 'ChannelOnBackend|64MiB|ConnectToSilentAddress|Failover|CacheCluster'
exit $rc
