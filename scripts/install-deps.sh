#!/usr/bin/env bash
# Installs viaduct's build, test and benchmark dependencies from Debian 12 packages. Idempotent:
# does nothing when everything is present. Needs root (or sudo).
set -euo pipefail
PACKAGES=(
  build-essential cmake ninja-build pkg-config           # build
  libfabric-dev libfabric-bin                            # libfabric back end; fi_pingpong baseline
  libibverbs-dev librdmacm-dev ibverbs-providers rdma-core ibverbs-utils rdmacm-utils  # verbs
  libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev  # CLI parsing, JSON, logging
  libsodium-dev                                          # member HMACs, Ed25519 server proofs
  libtomlplusplus-dev                                    # the configuration file (TOML)
  libsqlite3-dev libpq-dev postgresql                    # the record store: SQLite embedded default, PostgreSQL for a multi-machine cluster
  redis-server libhiredis-dev                            # the baseline of `viaduct bench cache` and its client (hiredis)
  help2man jq                                            # the man page; JSON in shell scripts
  stress-ng                                              # CPU hog beside fault and failover runs
  clang-14 libclang-rt-14-dev                            # libFuzzer targets (scripts/fuzz.sh)
  libgtest-dev libgmock-dev libbenchmark-dev             # tests and benchmarks
  freetds-bin                                            # tsql: an independent MC-SQLR client
  perftest qemu-system-x86 busybox-static cpio kmod iproute2  # Soft-RoCE guest (tests/rxe); netns cut trials
  gnuplot-nox                                            # plots of viaduct bench failover
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
timeout 900 $SUDO apt-get update -qq
timeout 1800 $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
