#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang, ASan+UBSan) in ${VIADUCT_FUZZ_BUILD_DIR:-build-fuzz}
# and runs each for a while from its seed corpus in tests/fuzz/corpus/<target>/.
#
#   scripts/fuzz.sh                  every target for 20 s (the CI run: about 4 minutes in all)
#   scripts/fuzz.sh --seconds 60     every target for 60 s
#   scripts/fuzz.sh --long           the long run: every target for 300 s, two side by side
#                                    (-j 2), 25 minutes in all on 2 cores; run it after a change to
#                                    a decoder, and commit any reproducer as a seed once fixed
#   scripts/fuzz.sh --runs 10000000  every target for exactly that many executions instead
#   scripts/fuzz.sh -j 2 fuzz_decode_frame fuzz_address_parse   only these, two at a time
#   scripts/fuzz.sh --keep-going     libFuzzer's fork mode: count crashes but keep fuzzing past them
#                                    (to learn what else a decoder hides behind a known bug)
#
# Inputs libFuzzer finds go to <build>/fuzz/<target>/corpus (the committed seeds stay as they are);
# a crash leaves its reproducer in <build>/fuzz/<target>/ and the run's log next to it. Replay one
# with: <build>/tests/fuzz/<target> <reproducer>. Prints executions per target and ends with
# "fuzz: N passed, N failed"; the exit status is non-zero when any target crashed.
set -uo pipefail
cd "$(dirname "$0")/.."

BUILD=${VIADUCT_FUZZ_BUILD_DIR:-build-fuzz}
CXX_FUZZ=${VIADUCT_FUZZ_CXX:-clang++-14}
seconds=20
runs=""
jobs=1
keep_going=0
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --long) seconds=300; jobs=2; shift ;;
    -j) jobs=$2; shift 2 ;;
    --keep-going) keep_going=1; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done

echo "=== building the fuzz targets in $BUILD ($CXX_FUZZ)"
mkdir -p "$BUILD"
if ! cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_COMPILER="$CXX_FUZZ" -DVIADUCT_FUZZ=ON \
      -DVIADUCT_BUILD_TESTS=OFF -DVIADUCT_BUILD_BENCH=OFF >"$BUILD/configure.log" 2>&1; then
  cat "$BUILD/configure.log"
  echo "fuzz: 0 passed, 1 failed (configure)"
  exit 1
fi
if ! cmake --build "$BUILD" -j2 --target fuzz_targets; then
  echo "fuzz: 0 passed, 1 failed (build)"
  exit 1
fi
if [ ${#targets[@]} -eq 0 ]; then
  for src in tests/fuzz/fuzz_*.cpp; do targets+=("$(basename "$src" .cpp)"); done
fi

# One target: runs it and writes "<execs> <seconds> <ok|crash> <detail>" to its result file.
run_one() {
  local t=$1 bin="$BUILD/tests/fuzz/$1" work="$BUILD/fuzz/$1"
  rm -f "$work/result" "$work/log"
  mkdir -p "$work/corpus" "$work/previous"
  # Reproducers of an earlier run move aside, so that only this run's count.
  find "$work" -maxdepth 1 -type f -regex '.*/\(crash\|leak\|timeout\|oom\)-.*' \
    -exec mv -t "$work/previous" {} +
  local args=(-print_final_stats=1 -timeout=10 "-artifact_prefix=$work/")
  if [ -n "$runs" ]; then args+=("-runs=$runs"); else args+=("-max_total_time=$seconds"); fi
  [ "$keep_going" -eq 1 ] && args+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
  # A slow input or a wedged run must not hang CI: a hard bound of twice the budget plus a minute.
  local limit=$((seconds * 2 + 60))
  [ -n "$runs" ] && limit=3600
  local start=$SECONDS rc
  # The first corpus directory receives what libFuzzer finds; the seeds are only read.
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 timeout "$limit" \
    "$bin" "${args[@]}" "$work/corpus" "tests/fuzz/corpus/$t" >"$work/log" 2>&1
  rc=$?
  local elapsed=$((SECONDS - start))
  # stat:: lines in a plain run; in fork mode only the "#N" progress lines count executions.
  local execs
  execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\)/\1/p' "$work/log" | tail -1)
  [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$work/log" | tail -1)
  local crashes
  crashes=$(find "$work" -maxdepth 1 -type f -regex '.*/\(crash\|leak\|timeout\|oom\)-.*' | wc -l)
  if [ "$rc" -eq 0 ] && { [ "$keep_going" -eq 0 ] || [ "$crashes" -eq 0 ]; }; then
    echo "${execs:-0} $elapsed ok -" >"$work/result"
  else
    local why repro
    why=$(grep -m1 -E 'property failed|^SUMMARY:|ERROR: libFuzzer|runtime error' "$work/log" |
          tr -s ' ' | cut -c1-160)
    repro=$(sed -n 's/.*Test unit written to \(.*\)/\1/p' "$work/log" | head -1)
    # Fork mode keeps the children's logs to itself; the reproducers are what is left.
    [ "$keep_going" -eq 1 ] && why="$crashes crash inputs (replay each for its report)" &&
      repro="$work/{crash,leak,timeout,oom}-*"
    [ "$rc" -eq 124 ] && why="killed after ${limit}s (hung)"
    echo "${execs:-0} $elapsed crash rc=$rc; ${why:-see $work/log}; reproducer: ${repro:-none}" \
      >"$work/result"
  fi
}

echo "=== fuzzing ${#targets[@]} targets, ${runs:+$runs runs}${runs:-${seconds}s} each, $jobs at a time"
running=0
for t in "${targets[@]}"; do
  if [ ! -x "$BUILD/tests/fuzz/$t" ]; then
    mkdir -p "$BUILD/fuzz/$t"
    echo "0 0 crash no such target" >"$BUILD/fuzz/$t/result"
    continue
  fi
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait

passed=0
failed=0
for t in "${targets[@]}"; do
  read -r execs elapsed verdict detail <"$BUILD/fuzz/$t/result"
  rate=$((elapsed > 0 ? execs / elapsed : execs))
  if [ "$verdict" = ok ]; then
    passed=$((passed + 1))
    printf '%-32s %12s execs in %4ss (%s/s)  ok\n' "$t" "$execs" "$elapsed" "$rate"
  else
    failed=$((failed + 1))
    printf '%-32s %12s execs in %4ss (%s/s)  CRASH: %s\n' "$t" "$execs" "$elapsed" "$rate" "$detail"
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
