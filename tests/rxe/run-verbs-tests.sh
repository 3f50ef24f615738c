#!/bin/sh
# Run INSIDE the test guest: the verbs suite on both topologies, each process under timeout.
#   sh tests/rxe/run-verbs-tests.sh PATH/TO/verbs_vi_test
# 1. dummy: one rxe device (10.77.0.1), including the connect-to-silent-address test;
# 2. pair: two rxe devices joined by a veth wire (10.77.1.1 <-> 10.77.1.2), including the
#    tc netem cut. The 64 MiB test runs once (dummy): over the wire it only costs time.
# Exit status: non-zero if either run failed.
test_binary=${1:?usage: run-verbs-tests.sh PATH/TO/verbs_vi_test [PATH/TO/channel_test]}
channel_binary=${2:-}
per_run_timeout=${VIADUCT_RXE_TEST_TIMEOUT_S:-200}
here=$(dirname "$0")
rc=0
sh "$here/guest-rxe-up.sh" dummy > /dev/null || exit 1
echo "== verbs_vi_test on one device (dummy, 10.77.0.1)"
VIADUCT_TEST_VERBS_HOST=10.77.0.1 timeout -k 5 "$per_run_timeout" "$test_binary" || rc=1
if [ -n "$channel_binary" ]; then
  echo "== channel suite over verbs:// on one device (dummy, 10.77.0.1)"
  VIADUCT_TEST_VERBS_HOST=10.77.0.1 timeout -k 5 "$per_run_timeout" "$channel_binary" \
    --gtest_filter='*/verbs' || rc=1
fi
sh "$here/guest-rxe-up.sh" pair > /dev/null || exit 1
echo "== verbs_vi_test across a veth wire (pair, 10.77.1.2 -> 10.77.1.1)"
VIADUCT_TEST_VERBS_HOST=10.77.1.1 VIADUCT_TEST_VERBS_CLIENT_HOST=10.77.1.2 \
  VIADUCT_TEST_VERBS_SILENT_HOST= VIADUCT_TEST_VERBS_NETEM_DEV=va \
  timeout -k 5 "$per_run_timeout" "$test_binary" --gtest_filter=-*64MiB* || rc=1
exit $rc
