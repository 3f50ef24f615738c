#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds, runs every CTest suite on this host
# (unit, ofi, and rdma — which says "skipped: no RDMA device" where there is none), then the
# verbs suites for real inside the Soft-RoCE guest (tests/rxe). Exit status non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
BUILD=${VIADUCT_BUILD_DIR:-build}

echo "=== host: ctest (unit, ofi, rdma)"
(cd "$BUILD" && timeout 1800 ctest --output-on-failure --timeout 300 -j2)

echo "=== Soft-RoCE guest: verbs suites on rdma_rxe"
timeout 600 tests/rxe/rxevm.sh -t 520 -- sh tests/rxe/run-verbs-tests.sh \
  "$BUILD/tests/transport_verbs_test" "$BUILD/tests/transport_ofi_test"
