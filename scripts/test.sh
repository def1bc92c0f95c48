#!/usr/bin/env bash
# The one command that sets up and runs every test: installs dependencies, builds an optimised
# tree (build/) and a sanitizer tree (build-asan/, ASan+UBSan), runs ctest in both, runs the
# netstack frame fuzzer for a bounded time (build-fuzz/, clang + libFuzzer), prints a summary.
# Usage: scripts/test.sh [--quick]   (--quick skips the sanitizer trees and the fuzzer)
set -uo pipefail

usage() {
  echo "usage: $0 [--quick]"
  echo "  --quick   build and test build/ only (skip build-asan/, build-tsan/ and the fuzzer build-fuzz/)"
}

quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1

jobs=$(nproc 2>/dev/null || echo 2)
declare -a summary=()
failed=0
t_start=$SECONDS

note() { printf '\n=== %s\n' "$*"; }
record() { # record NAME STATUS DETAIL
  summary+=("$(printf '%-28s %-5s %s' "$1" "$2" "$3")")
  case "$2" in ok|skip) ;; *) failed=1 ;; esac
}

note "setup: checking dependencies"
if ./scripts/setup.sh </dev/null; then
  record setup ok ""
else
  record setup FAIL "scripts/setup.sh failed"
  printf '\n%s\n' "${summary[@]}"
  exit 1
fi

# build_and_test DIR LABEL CMAKE_ARGS...
build_and_test() {
  local dir=$1 label=$2
  shift 2
  local t0=$SECONDS
  note "$label: configure $dir"
  if ! cmake -S . -B "$dir" -DDEMI_BUILD_TESTS=ON -DDEMI_BUILD_EXAMPLES=ON "$@"; then
    record "$label configure" FAIL "cmake -S . -B $dir failed"
    return
  fi
  note "$label: build $dir (-j$jobs)"
  if ! cmake --build "$dir" -j "$jobs"; then
    record "$label build" FAIL "see the compiler output above"
    return
  fi
  record "$label build" ok "$((SECONDS - t0)) s"
  t0=$SECONDS
  note "$label: ctest in $dir"
  local log="$dir/ctest.log"
  # --timeout is the default for tests that do not set their own TIMEOUT property.
  ctest --test-dir "$dir" --output-on-failure -j2 --timeout 300 --no-tests=error ${DEMI_CTEST_REGEX:+-R "$DEMI_CTEST_REGEX"} \
    </dev/null 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local line
  line=$(grep -E 'tests passed|No tests were found' "$log" | tail -n 1)
  if [ "$rc" -eq 0 ]; then
    record "$label ctest" ok "${line:-passed} ($((SECONDS - t0)) s)"
  else
    record "$label ctest" FAIL "${line:-ctest exited $rc} ($((SECONDS - t0)) s)"
  fi
}

build_and_test build release -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDEMI_SANITIZE=OFF -DDEMI_TSAN=OFF

if [ "$quick" -eq 0 ]; then
  # Sanitizer findings are failures: stop at the first report, and check for leaks at exit.
  export ASAN_OPTIONS="halt_on_error=1:abort_on_error=0:detect_leaks=1:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=1"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
  export LSAN_OPTIONS="report_objects=1"
  build_and_test build-asan asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDEMI_SANITIZE=ON -DDEMI_TSAN=OFF
  # ThreadSanitizer on the tests that exercise threads inside one process (core, shim, contract).
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1" DEMI_CTEST_REGEX='^(unit_|contract_)' \
    build_and_test build-tsan tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDEMI_SANITIZE=OFF -DDEMI_TSAN=ON \
    -DDEMI_BUILD_EXAMPLES=OFF
else
  record "asan" skip "--quick"
  record "tsan" skip "--quick"
fi

# The netstack frame fuzzer (tests/fuzz, doc/fuzzing.md): libFuzzer with ASan+UBSan for a bounded
# time over the seed corpus; a crash, leak, sanitizer report or slow input fails the stage.
fuzz_stage() {
  local dir=build-fuzz t0=$SECONDS secs=${DEMI_FUZZ_SECONDS:-75}
  note "fuzz: configure $dir (clang, -DDEMI_FUZZ=ON)"
  if ! CC=clang CXX=clang++ cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDEMI_FUZZ=ON \
       -DDEMI_SANITIZE=OFF -DDEMI_TSAN=OFF -DDEMI_BUILD_EXAMPLES=OFF; then
    record "fuzz configure" FAIL "cmake -S . -B $dir failed"
    return
  fi
  note "fuzz: build fuzz_frames"
  if ! cmake --build "$dir" --target fuzz_frames -j "$jobs"; then
    record "fuzz build" FAIL "see the compiler output above"
    return
  fi
  # New inputs go to a scratch corpus; the committed seeds are only read.
  rm -rf "$dir/fuzz-corpus" "$dir/fuzz-artifacts"
  mkdir -p "$dir/fuzz-corpus" "$dir/fuzz-artifacts"
  note "fuzz: fuzz_frames for ${secs} s"
  local log="$dir/fuzz.log"
  ASAN_OPTIONS="halt_on_error=1:detect_leaks=1" UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
    "$dir/tests/fuzz/fuzz_frames" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$dir/fuzz-artifacts/" "$dir/fuzz-corpus" tests/fuzz/corpus </dev/null >"$log" 2>&1
  local rc=$?
  local runs
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  if [ "$rc" -eq 0 ]; then
    record fuzz ok "${runs:-?} inputs in $((SECONDS - t0)) s"
  else
    tail -n 60 "$log"
    record fuzz FAIL "fuzz_frames exited $rc: see $log and $dir/fuzz-artifacts/"
  fi
}

if [ "$quick" -eq 0 ]; then
  fuzz_stage
else
  record "fuzz" skip "--quick"
fi

printf '\n=== summary (%d s)\n' "$((SECONDS - t_start))"
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  echo "RESULT: FAIL"
  exit 1
fi
echo "RESULT: PASS"
exit 0
