#!/usr/bin/env bash
# The examples as an application builds them: viaduct installed to a scratch prefix, the prefix
# moved elsewhere (the package must be relocatable), then examples/ built four ways — CMake
# find_package and pkg-config, each against libviaduct.so and libviaduct.a. Each build runs the
# replicated key-value service (an active and a passive kv_server) under a kv_client load, the
# active is SIGKILLed midway, and the client must end with every value read back and no error.
# Also checks: `viaduct --version` equals the library's and the headers' version, the shared
# library exports only the public API, and the shared builds really load libviaduct.so.
#   scripts/examples.sh [BUILD_DIR]      (default: build, already built)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${1:-${VIADUCT_BUILD_DIR:-build}}
WORK=$(mktemp -d /tmp/viaduct-examples.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() {
  echo "examples: FAILED: $*" >&2
  exit 1
}

echo "== install to a scratch prefix, then move it (relocatable package)"
cmake --install "$BUILD" --prefix "$WORK/staged" >/dev/null
mv "$WORK/staged" "$WORK/prefix"
PREFIX=$WORK/prefix
LIBDIR=$(dirname "$(find "$PREFIX" -name 'libviaduct.so' | head -1)")
[ -n "$LIBDIR" ] || fail "no libviaduct.so installed"
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig
# Only the public headers are installed.
headers=$(cd "$PREFIX/include" && find . -name '*.hpp' | sort | tr '\n' ' ')
echo "installed headers: $headers"
case "$headers" in *transport/* | *failover/* | *cluster/*) fail "internal headers installed" ;; esac

echo "== versions"
tool_version=$("$PREFIX/bin/viaduct" --version | awk '{print $NF}')
pc_version=$(pkg-config --modversion viaduct)
[ "$tool_version" = "$pc_version" ] || fail "viaduct --version $tool_version, viaduct.pc $pc_version"

echo "== the shared library exports only viaduct's public API"
leaked=$(nm -DC --defined-only "$LIBDIR/libviaduct.so" |
  grep -E ' viaduct::(transport|failover|cluster|logging|bench|testing)::' || true)
[ -z "$leaked" ] || fail "internal symbols exported: $(echo "$leaked" | head -5)"

build_cmake() {  # dir static(ON|OFF)
  cmake -S "$ROOT/examples" -B "$1" -G Ninja -DCMAKE_PREFIX_PATH="$PREFIX" \
    -DVIADUCT_EXAMPLES_STATIC="$2" >/dev/null
  cmake --build "$1" >/dev/null
}
build_pkgconfig() {  # dir module
  mkdir -p "$1"
  make -s -C "$ROOT/examples" -f Makefile PKG="$2" \
    kv_server kv_client >/dev/null
  mv "$ROOT/examples/kv_server" "$ROOT/examples/kv_client" "$1/"
}

port=$((24000 + ($$ % 200) * 10))
"$PREFIX/bin/viaduct" keygen "$WORK/cluster.key"
run_failover() {  # dir
  local dir=$1 a b key out
  port=$((port + 4))
  local a_uri="ofi+tcp://127.0.0.1:$port" b_uri="ofi+tcp://127.0.0.1:$((port + 1))"
  "$dir/kv_server" --name KV --role active --listen "$a_uri" --partner "$b_uri" \
    --lookup "127.0.0.1:$((port + 2))" --cluster-key "$WORK/cluster.key" >"$dir/a.log" 2>&1 &
  a=$!
  PIDS+=("$a")
  "$dir/kv_server" --name KV --role passive --listen "$b_uri" --partner "$a_uri" \
    --lookup "127.0.0.1:$((port + 3))" --cluster-key "$WORK/cluster.key" >"$dir/b.log" 2>&1 &
  b=$!
  PIDS+=("$b")
  for _ in $(seq 100); do grep -q '^service-key' "$dir/a.log" && break; sleep 0.1; done
  key=$(awk '/^service-key/ {print $2}' "$dir/a.log")
  [ -n "$key" ] || fail "$dir: active never served: $(cat "$dir/a.log")"
  sleep 1  # the passive joins and gets the snapshot
  "$dir/kv_client" --name KV --lookup "127.0.0.1:$((port + 2)),127.0.0.1:$((port + 3))" \
    --service-key "$key" --count 3000 --pause-us 1000 >"$dir/client.log" 2>&1 &
  local client=$!
  sleep 1  # midway through the puts (3000 at 1 ms or more each)
  kill -9 "$a"
  wait "$a" 2>/dev/null || true
  if ! wait "$client"; then
    fail "$dir: client failed: $(cat "$dir/client.log"); active: $(cat "$dir/a.log"); passive: $(cat "$dir/b.log")"
  fi
  kill -0 "$b" 2>/dev/null || fail "$dir: the passive died: $(cat "$dir/b.log")"
  grep -q '^took-over' "$dir/b.log" || fail "$dir: the passive never took over: $(cat "$dir/b.log")"
  grep -q 'failed over to' "$dir/client.log" ||
    fail "$dir: the client never failed over: $(cat "$dir/client.log")"
  kill "$b"
  wait "$b" 2>/dev/null || true
  echo "$(basename "$dir"): $(tail -1 "$dir/client.log")"
}

for variant in cmake-shared cmake-static pkgconfig-shared pkgconfig-static; do
  dir=$WORK/$variant
  echo "== $variant"
  case $variant in
    cmake-shared) build_cmake "$dir" OFF ;;
    cmake-static) build_cmake "$dir" ON ;;
    pkgconfig-shared) build_pkgconfig "$dir" viaduct ;;
    pkgconfig-static) build_pkgconfig "$dir" viaduct-static ;;
  esac
  if [[ $variant == *-shared ]]; then
    ldd "$dir/kv_client" | grep -q "libviaduct.so" || fail "$variant does not load libviaduct.so"
  else
    ! ldd "$dir/kv_client" | grep -q "libviaduct.so" || fail "$variant loads libviaduct.so"
  fi
  read -r lib_version header_version < <("$dir/kv_client" --version)
  [ "$lib_version" = "$tool_version" ] && [ "$header_version" = "$tool_version" ] ||
    fail "$variant: library $lib_version, headers $header_version, viaduct --version $tool_version"
  run_failover "$dir"
done
echo "examples: 4 builds against the installed package, each failed over with no error"
