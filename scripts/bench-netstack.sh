#!/usr/bin/env bash
# netstack (issue 5): builds netstack-bench (an optimised tree, build/ by default), runs it several times after a
# warm-up run, takes the median of every figure across runs, prints a markdown table and writes it with the
# machine's details into doc/benchmarks.md under "## netstack: two stacks in one thread (issue 5)" (that section
# is regenerated; the rest of the file is kept).
# Usage: scripts/bench-netstack.sh [--runs N] [--rr ROUND_TRIPS] [--bulk-mib MIB] [--no-doc]
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$root/scripts/bench-lib.sh"
build=${DEMI_BENCH_BUILD:-$root/build}
doc=$root/doc/benchmarks.md
heading="## netstack: two stacks in one thread (issue 5)"
runs=5
rr=200000
bulk_mib=2048
write_doc=1

usage() {
  sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --rr) rr=$2; shift 2 ;;
    --bulk-mib) bulk_mib=$2; shift 2 ;;
    --no-doc) write_doc=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
case "$runs$rr$bulk_mib" in *[!0-9]*) usage >&2; exit 2 ;; esac
if [ "$runs" -lt 1 ]; then usage >&2; exit 2; fi

# ---- build (release: a sanitizer tree would measure the sanitizer)
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
else
  cmake -S "$root" -B "$build" >/dev/null
fi
if grep -q '^DEMI_SANITIZE:BOOL=ON' "$build/CMakeCache.txt" || grep -q '^DEMI_TSAN:BOOL=ON' "$build/CMakeCache.txt"; then
  echo "bench-netstack.sh: $build is a sanitizer build; point DEMI_BENCH_BUILD at an optimised one" >&2
  exit 1
fi
btype=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$build/CMakeCache.txt")
case "$btype" in Release|RelWithDebInfo) ;; *)
  echo "bench-netstack.sh: $build has build type '${btype:-none}'; use Release or RelWithDebInfo" >&2
  exit 1 ;;
esac
cmake --build "$build" -j"$(nproc)" --target netstack-bench >/dev/null
bench=$build/tests/bench/netstack-bench

# ---- run: one warm-up run (page faults, CPU frequency), then the measured ones
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "netstack-bench: 1 warm-up + $runs runs ($rr round trips, $bulk_mib MiB bulk); load average before: $load_before" >&2
"$bench" --rr "$((rr / 4 + 1))" --bulk-mib "$((bulk_mib / 4 + 1))" >/dev/null
for i in $(seq 1 "$runs"); do
  "$bench" --rr "$rr" --bulk-mib "$bulk_mib" | sed "s/^/$i /" >>"$raw"
  echo "  run $i/$runs done" >&2
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- medians per key
med=$(awk '
  { val[$2, ++cnt[$2]] = $3; if (!($2 in seen)) { seen[$2] = 1; keys[++nk] = $2 } }
  END {
    for (k = 1; k <= nk; k++) {
      key = keys[k]; n = cnt[key];
      for (i = 1; i <= n; i++) a[i] = val[key, i];
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t; }
      m = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2;
      printf "%s %s\n", key, m;
    }
  }' "$raw")
get() { echo "$med" | awk -v k="$1" '$1 == k { print $2 }'; }
range() { awk -v k="$1" '$2 == k { v = $3 + 0; if (n++ == 0 || v < min) min = v; if (n == 1 || v > max) max = v } END { printf "%s-%s", min, max }' "$raw"; }

rr_seg=$(get rr_stack_ns_per_frame)
half=$(awk -v v="$rr_seg" 'BEGIN { printf "%.1f", v / 2 }')
verdict=$(awk -v v="$half" 'BEGIN { print (v <= 200) ? "met" : "missed" }')
table=$(cat <<EOF
| workload | metric | median | range over runs |
|---|---|---:|---:|
| 64 B request-response | round trips per second (wall clock) | $(get rr_per_sec) | $(range rr_per_sec) |
| 64 B request-response | round trips per CPU second | $(get rr_per_cpu_sec) | $(range rr_per_cpu_sec) |
| 64 B request-response | frames per round trip | $(get rr_frames_per_rt) | $(range rr_frames_per_rt) |
| 64 B request-response | stack ns per round trip (both stacks) | $(get rr_stack_ns_per_rt) | $(range rr_stack_ns_per_rt) |
| 64 B request-response | stack ns per 64 B segment, sender + receiver | $rr_seg | $(range rr_stack_ns_per_frame) |
| 64 B request-response | link ns per round trip (baseline, excluded) | $(get rr_link_ns_per_rt) | $(range rr_link_ns_per_rt) |
| 64 B request-response | clock reads ns per round trip (excluded) | $(get rr_clock_ns_per_rt) | $(range rr_clock_ns_per_rt) |
| bulk, 64 KiB sends | throughput Gbit/s (wall clock) | $(get bulk_gbps) | $(range bulk_gbps) |
| bulk, 64 KiB sends | throughput Gbit/s per CPU second | $(get bulk_gbps_per_cpu) | $(range bulk_gbps_per_cpu) |
| bulk, 64 KiB sends | stack ns per frame (data or ACK), sender + receiver | $(get bulk_stack_ns_per_frame) | $(range bulk_stack_ns_per_frame) |
| bulk, 64 KiB sends | stack ns per KiB moved | $(get bulk_stack_ns_per_kib) | $(range bulk_stack_ns_per_kib) |
| bulk, 64 KiB sends | link ns per frame (baseline, excluded) | $(get bulk_link_ns_per_frame) | $(range bulk_link_ns_per_frame) |
| both | CPU share of wall clock (request-response / bulk) | $(get rr_cpu_share) / $(get bulk_cpu_share) | |
EOF
)
summary="Target (issue 5): at most 200 ns of stack work per 64 B TCP segment. Median: $rr_seg ns for the
sending and the receiving stack together, $half ns per stack and segment: $verdict."

echo
echo "$table"
echo
echo "$summary"
echo

# ---- doc/benchmarks.md
if [ "$write_doc" -eq 1 ]; then
  cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
  section=$(mktemp)
  {
    echo "$heading"
    echo
    echo "Generated by \`scripts/bench-netstack.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) CPUs"
    echo "(${cpu_model:-unknown model}), Linux $(uname -r), build type ${btype}, commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')."
    echo "Load average before / after: $load_before / $load_after (other work on the machine shows up here)."
    echo
    echo "\`netstack-bench\` (tests/bench/netstack_bench.c) runs two netstacks in one thread over an in-memory"
    echo "link without loss (frames move by pointer; one the sender still references is copied), TCP_NODELAY,"
    echo "real CLOCK_MONOTONIC time. Request-response: $rr round trips of 64 B each way after a tenth as many"
    echo "warm-up ones. Bulk: $bulk_mib MiB one way in 64 KiB sends after an eighth as much warm-up. The measured"
    echo "loops do nothing but ns_* calls and one clock read per polling round, so the stack's work is the loop's"
    echo "CPU time (CLOCK_THREAD_CPUTIME_ID: time the shared machine gave to others does not count) minus the"
    echo "clock reads and minus the link: its callbacks run inside ns_poll, so their per-frame CPU cost is"
    echo "measured alone in the same run (the baseline) and subtracted."
    echo "\"Stack ns per segment\" is everything both stacks spend per frame: the sender's send call and"
    echo "output, the receiver's input, its recv call, ACK work and idle polls. One warm-up run, then the median"
    echo "of $runs runs. Wall-clock rates include time the machine gave to other work (see the CPU share row)."
    echo
    echo "$table"
    echo
    echo "$summary"
    echo
  } >"$section"
  bench_doc_section "$doc" "$heading" "$section"
  rm -f "$section"
  echo "wrote $doc" >&2
fi
