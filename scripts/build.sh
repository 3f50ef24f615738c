#!/usr/bin/env bash
# Configures and builds viaduct in ${VIADUCT_BUILD_DIR:-build} (RelWithDebInfo, Ninja).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${VIADUCT_BUILD_DIR:-build}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo ${VIADUCT_CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
