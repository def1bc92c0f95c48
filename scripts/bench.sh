#!/usr/bin/env bash
# catnap vs Linux sockets over 127.0.0.1: builds demi-bench (build/ by default), runs it several times with
# both backends in every run (their order alternating), takes medians across runs, prints a markdown table
# and writes it with the machine's details into doc/benchmarks.md under "## catnap vs Linux sockets (issue 2)"
# (that section is regenerated; the rest of the file is kept).
# Usage: scripts/bench.sh [--runs N] [--placements "none split same"] [--iters N] [--tput-mib MIB] [--no-doc]
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$root/scripts/bench-lib.sh"
build=${DEMI_BENCH_BUILD:-$root/build}
doc=$root/doc/benchmarks.md
heading="## catnap vs Linux sockets (issue 2)"
runs=5
placements="none split same"
iters=20000
warmup=2000
tput_mib=2048
write_doc=1

usage() {
  sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --placements) placements=$2; shift 2 ;;
    --iters) iters=$2; shift 2 ;;
    --tput-mib) tput_mib=$2; shift 2 ;;
    --no-doc) write_doc=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

# ---- build
# Always (re)configure: a tree configured before tests/bench existed has no demi-bench target.
cmake -S "$root" -B "$build" >/dev/null
if grep -q '^DEMI_SANITIZE:BOOL=ON' "$build/CMakeCache.txt" || grep -q '^DEMI_TSAN:BOOL=ON' "$build/CMakeCache.txt"; then
  echo "bench.sh: $build is a sanitizer build; point DEMI_BENCH_BUILD at an optimised one" >&2
  exit 1
fi
cmake --build "$build" -j"$(nproc)" --target demi-bench >/dev/null
bench=$build/tests/bench/demi-bench
btype=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$build/CMakeCache.txt")

# ---- run
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "demi-bench: $runs runs x placements ($placements) x {linux, catnap}; load average before: $load_before" >&2
for place in $placements; do
  for i in $(seq 1 "$runs"); do
    # Alternate which backend goes first, so neither always runs on a warmer (or busier) machine.
    if [ $((i % 2)) -eq 1 ]; then order=linux,catnap; else order=catnap,linux; fi
    set +e
    "$bench" --pin "$place" --backend "$order" --iters "$iters" --warmup "$warmup" --tput-mib "$tput_mib" >>"$raw"
    rc=$?
    set -e
    if [ $rc -eq 77 ]; then
      echo "demi-bench: placement '$place' is impossible on this machine; skipped" >&2
      break
    elif [ $rc -ne 0 ]; then
      echo "demi-bench failed (exit $rc) in run $i, placement $place" >&2
      exit 1
    fi
    echo "  $place run $i/$runs done ($order)" >&2
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- medians: one row per (placement, metric), columns linux | catnap | ratio
table=$(awk -v placements="$placements" '
  function median(key,   n, i, j, t, a) {
    n = cnt[key]; if (n == 0) return "";
    for (i = 1; i <= n; i++) a[i] = val[key, i];
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t; }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2;
  }
  /^RESULT / {
    delete f;
    for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2]; }
    for (m in f) { key = f["pin"] SUBSEP f["backend"] SUBSEP m; val[key, ++cnt[key]] = f[m]; }
  }
  END {
    names["lat_p50_us"] = "64 B round trip p50 (us)";
    names["lat_p99_us"] = "64 B round trip p99 (us)";
    names["lat_client_cpu"] = "client CPU during ping-pong (cores)";
    names["tput_MBps"] = "64 KiB push/pop throughput (MB/s)";
    names["tput_client_cpu"] = "client CPU during stream (cores)";
    order = "lat_p50_us lat_p99_us lat_client_cpu tput_MBps tput_client_cpu";
    where["none"] = "placement left to the scheduler";
    where["split"] = "server and client pinned to two different CPUs";
    where["same"] = "server and client pinned to one CPU";
    np = split(placements, pl, " "); nm = split(order, ms, " ");
    print "| placement | metric | Linux sockets | catnap | ratio catnap/linux |";
    print "|---|---|---:|---:|---:|";
    for (p = 1; p <= np; p++) {
      for (k = 1; k <= nm; k++) {
        m = ms[k];
        l = median(pl[p] SUBSEP "linux" SUBSEP m); c = median(pl[p] SUBSEP "catnap" SUBSEP m);
        if (l == "" || c == "") continue;
        fmt = (m ~ /cpu/) ? "%.2f" : (m ~ /MBps/ ? "%.0f" : "%.1f");
        r = (l > 0) ? sprintf("%.2f", c / l) : "-";
        printf "| %s | %s | " fmt " | " fmt " | %s |\n", pl[p], names[m], l, c, r;
      }
    }
    print "";
    for (p = 1; p <= np; p++) {
      n = cnt[pl[p] SUBSEP "linux" SUBSEP "lat_p50_us"];
      if (n > 0) printf "- `%s`: %s (%d runs)\n", pl[p], where[pl[p]], n;
    }
  }' "$raw")

echo
echo "$table"
echo

# ---- doc/benchmarks.md
if [ "$write_doc" -eq 1 ]; then
  cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
  spin=${DEMI_WAIT_SPIN_US:-default (50)}
  section=$(mktemp)
  {
    echo "$heading"
    echo
    echo "Generated by \`scripts/bench.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) CPUs"
    echo "(${cpu_model:-unknown model}), Linux $(uname -r), build type ${btype:-?}, DEMI_WAIT_SPIN_US=$spin."
    echo "Load average before / after: $load_before / $load_after (other work on the machine shows up here)."
    echo
    echo "\`demi-bench\` runs server and client as two forked processes over 127.0.0.1, catnap through"
    echo "demi_push/demi_pop/demi_wait and Linux through blocking send/recv, TCP_NODELAY on both ends of both."
    echo "Latency: $iters round trips of 64 B after $warmup warm-up ones; throughput: $tput_mib MiB in 64 KiB"
    echo "pushes (one outstanding, as a blocking send), timed until the server acknowledges the last byte."
    echo "Each figure is the median over $runs runs; every run measures both backends, their order alternating."
    echo "\"client CPU\" is the client's user+system time per wall-clock second."
    echo
    echo "$table"
    echo
    echo "The analysis of these figures is in the next section, which this script leaves alone."
    echo
  } >"$section"
  bench_doc_section "$doc" "$heading" "$section"
  rm -f "$section"
  echo "written to ${doc#$root/}" >&2
fi
