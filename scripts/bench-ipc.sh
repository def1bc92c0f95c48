#!/usr/bin/env bash
# Kernel-bypass IPC on one host (issue 4), all in one run and one table: the floor (two pinned threads,
# those of the catmem ping-pong, bouncing one cache line in batches between catmem's), catmem 64 B pipe ping-pong (p50/p99) and 64 KiB throughput (catmem-bench);
# 64 B TCP ping-pong over catloop vs kernel loopback TCP through catnap, plain kernel TCP and a Unix
# domain socket (ipc-pingpong); redis-benchmark -t set,get -n 200000 at -c 1 and -c 50 with server and
# benchmark both under `demirun --libos catloop` vs both native. One warm-up round first, then --runs
# runs; figures are medians over the runs, ratios against baselines from the same run. Writes the table
# into doc/benchmarks.md under "## catmem and catloop: IPC on one host (issue 4)" (that section is
# regenerated; the rest of the file is kept) and the round-trip distributions to doc/bench-ipc-rtt.png.
# Usage: scripts/bench-ipc.sh [--runs N] [--build DIR] [--no-build] [--no-doc] [--no-redis] [--quick] [--plot FILE]
#   --quick  tiny counts, one run, no doc, plot into the temporary directory: checks the script itself
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$root/scripts/bench-lib.sh"
build=${DEMI_BENCH_BUILD:-$root/build}
doc=$root/doc/benchmarks.md
plot_rel=doc/bench-ipc-rtt.png
heading="## catmem and catloop: IPC on one host (issue 4)"
runs=3
write_doc=1
do_build=1
do_redis=1
quick=0
plot_out=""

usage() { sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --no-doc) write_doc=0; shift ;;
    --no-redis) do_redis=0; shift ;;
    --quick) quick=1; shift ;;
    --plot) plot_out=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
case "$runs" in ''|*[!0-9]*|0) echo "bench-ipc.sh: --runs needs a positive number" >&2; exit 2 ;; esac

# Workload sizes; --quick shrinks them to test the script.
cm_rtt=200000; cm_tput=32768; cm_floor=1000000   # catmem-bench: round trips, 64 KiB messages, floor bounces
pp_fast=100000; pp_slow=10000                      # ipc-pingpong round trips: catloop / kernel paths
redis_n=200000
if [ "$quick" -eq 1 ]; then
  cm_rtt=2000; cm_tput=64; cm_floor=20000; pp_fast=500; pp_slow=200; redis_n=2000; runs=1; write_doc=0
fi

say() { echo "$*" >&2; }

# ---- build
if [ "$do_build" -eq 1 ]; then
  [ -f "$build/CMakeCache.txt" ] || cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" -j"$(nproc)" --target catmem-bench ipc-pingpong demikernel_preload >/dev/null
fi
if grep -Eq '^DEMI_(SANITIZE|TSAN):BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
  if [ "$quick" -eq 0 ]; then
    echo "bench-ipc.sh: $build is a sanitizer build; point --build at an optimised one" >&2
    exit 1
  fi
  do_redis=0 # a sanitizer runtime does not go under another program's LD_PRELOAD
  say "bench-ipc.sh: sanitizer build: redis rows skipped"
fi
cmbench=$build/tests/catmem/catmem-bench
pingpong=$build/tests/catmem/ipc-pingpong
demirun=$build/preload/demirun
for b in "$cmbench" "$pingpong"; do
  [ -x "$b" ] || { echo "bench-ipc.sh: $b not built (catmem and catloop must be enabled)" >&2; exit 77; }
done
btype=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$build/CMakeCache.txt" 2>/dev/null || echo "?")
PATH=$PATH:/usr/sbin:/sbin
if [ "$do_redis" -eq 1 ]; then
  for p in redis-server redis-benchmark ss; do
    command -v "$p" >/dev/null 2>&1 || { say "bench-ipc.sh: $p not installed (scripts/setup.sh); redis rows skipped"; do_redis=0; }
  done
  [ -x "$demirun" ] || { say "bench-ipc.sh: no $demirun; redis rows skipped"; do_redis=0; }
fi
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=$(command -v python3 || echo python3)

tmp=$(mktemp -d /tmp/demi-bench-ipc.XXXXXX)
chmod 755 "$tmp"
pids=()
# shellcheck disable=SC2317  # invoked through the EXIT trap
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

raw=$tmp/raw   # lines: KEY VALUE
: >"$raw"
failures=()
record() { echo "$1 $2" >>"$raw"; }
last() { awk -v k="$1" '$1 == k { v = $2 } END { print v }' "$raw"; }
# ratio KEY A B: record A's last value / B's last value (this run's), if both exist
ratio_of() {
  local a b
  a=$(last "$2"); b=$(last "$3")
  [ -n "$a" ] && [ -n "$b" ] && awk -v a="$a" -v b="$b" 'BEGIN { exit !(b > 0) }' && record "$1" "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.4f", a / b }')"
  return 0
}
failed() { failures+=("$1"); say "  FAILED: $1"; [ -f "${2:-}" ] && tail -n 10 "$2" | sed 's/^/    /' >&2; return 0; }

# field NAME FILE: the value of NAME=... on the file's "result:" line
field() { sed -n "s/^result:.* $1=\([0-9.]*\).*/\1/p; s/^result: $1=\([0-9.]*\).*/\1/p" "$2" | head -n 1; }

# One catmem-bench run: floor and catmem. SAMPLES (optional): prefix for the plot's samples.
bench_catmem() {
  local log=$tmp/catmem.log k
  if ! CATMEM_BENCH_SAMPLES=${1:-} timeout 300 "$cmbench" "$cm_rtt" "$cm_tput" "$cm_floor" >"$log" 2>&1; then
    failed catmem-bench "$log"; return
  fi
  for k in floor_p50 floor_p99 catmem_p50 catmem_p99 catmem_gbps catmem_ratio; do
    record "$k" "$(field "$k" "$log")"
  done
  say "  $(grep -E '^catmem p50' "$log")"
}

# One ipc-pingpong run: KEY MODE ITERS [SAMPLES]
bench_pp() {
  local key=$1 mode=$2 n=$3 log=$tmp/pp-$1.log
  if ! timeout 300 "$pingpong" "$mode" "$n" $((n / 10)) ${4:+"$4"} >"$log" 2>&1; then
    failed "ipc-pingpong $mode" "$log"; return
  fi
  record "${key}_p50" "$(field p50 "$log")"
  record "${key}_p99" "$(field p99 "$log")"
  say "  $(head -n 1 "$log")"
}

free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_port() { # PORT PID
  local _
  for _ in $(seq 1 200); do
    ss -Hltn "sport = :$1" | grep -q . && return 0
    compgen -G "/dev/shm/demi-catloop.*.127.0.0.1.$1" >/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

stop() { # PID
  kill -TERM "$1" 2>/dev/null || true
  local _
  for _ in $(seq 1 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$1" 2>/dev/null || true
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# One redis round: VARIANT (native | catloop): server and benchmark both under it.
bench_redis() {
  local v=$1 port pid log c t rps p50
  local wrap=()
  [ "$v" = native ] || wrap=("$demirun" --libos catloop --)
  port=$(free_port)
  timeout -k 5 900 "${wrap[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$tmp" --logfile '' --protected-mode no >"$tmp/redis-$v.log" 2>&1 </dev/null &
  pid=$!
  pids+=("$pid")
  if ! wait_port "$port" "$pid"; then failed "redis-server ($v)" "$tmp/redis-$v.log"; stop "$pid"; return; fi
  sleep 0.2
  for c in 50 1; do
    log=$tmp/redis-bench-$v-c$c.csv
    if ! timeout 600 "${wrap[@]}" redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -n "$redis_n" -c "$c" --csv \
        >"$log" 2>&1 </dev/null; then
      failed "redis-benchmark -c $c ($v)" "$log"; continue
    fi
    for t in SET GET; do
      # "SET","87719.30","0.300","0.088","0.287",...: test, rps, avg, min, p50 (ms)
      rps=$(awk -F'"' -v t="$t" '$2 == t { print $4 }' "$log")
      p50=$(awk -F'"' -v t="$t" '$2 == t { print $10 * 1000 }' "$log")
      if [ -z "$rps" ]; then failed "redis-benchmark -c $c $t ($v)" "$log"; continue; fi
      record "redis_c${c}_${t}_rps_$v" "$rps"
      record "redis_c${c}_${t}_p50_$v" "$p50"
      say "  redis -c $c $t ($v): $rps req/s, p50 $p50 us"
    done
  done
  stop "$pid"
}

one_round() { # SAMPLES_DIR (empty: none)
  local s=${1:-}
  bench_catmem ${s:+"$s/rtt"}
  bench_pp catloop demi:catloop "$pp_fast" ${s:+"$s/rtt.catloop"}
  bench_pp catnap demi:catnap "$pp_slow" ${s:+"$s/rtt.catnap"}
  bench_pp ktcp tcp "$pp_slow" ${s:+"$s/rtt.ktcp"}
  bench_pp unix unix "$pp_slow" ${s:+"$s/rtt.unix"}
  # Ratios within this run: the load changes between runs, so each run is compared with itself.
  # catmem-bench compares each catmem batch with the floor batch just before it: its median ratio.
  [ -n "$(last catmem_ratio)" ] && record r_catmem_floor "$(last catmem_ratio)"
  ratio_of r_catnap_catloop catnap_p50 catloop_p50
  ratio_of r_ktcp_catloop ktcp_p50 catloop_p50
  ratio_of r_unix_catloop unix_p50 catloop_p50
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
say "bench-ipc: warm-up + $runs runs; load average before: $load_before"
t0=$SECONDS
say "warm-up (not counted)"
cm_rtt_saved=$cm_rtt; pp_fast_saved=$pp_fast
cm_rtt=$((cm_rtt / 10 + 1)); pp_fast=$((pp_fast / 10 + 1))
one_round "" >/dev/null 2>&1 || true
cm_rtt=$cm_rtt_saved; pp_fast=$pp_fast_saved
: >"$raw"
failures=()
mkdir -p "$tmp/samples"
for i in $(seq 1 "$runs"); do
  say "run $i/$runs"
  # The last run's samples make the plot.
  if [ "$i" -eq "$runs" ]; then one_round "$tmp/samples"; else one_round ""; fi
  if [ "$do_redis" -eq 1 ]; then
    # Alternate which variant goes first, so neither always runs on a warmer (or busier) machine.
    if [ $((i % 2)) -eq 1 ]; then bench_redis native; bench_redis catloop; else bench_redis catloop; bench_redis native; fi
    for k in c50_SET c50_GET c1_SET c1_GET; do
      ratio_of "r_redis_${k}_rps" "redis_${k}_rps_catloop" "redis_${k}_rps_native"
      ratio_of "r_redis_${k}_p50" "redis_${k}_p50_catloop" "redis_${k}_p50_native"
    done
  fi
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
say "done in $((SECONDS - t0)) s; load average after: $load_after"

# ---- medians and the table
table=$(awk -v redis="$do_redis" '
  function median(key,   n, i, j, t, a) {
    n = cnt[key]; if (n == 0) return "";
    for (i = 1; i <= n; i++) a[i] = val[key, i];
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t; }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2;
  }
  function us(x) { return x == "" ? "-" : (x / 1000 >= 100 ? sprintf("%.0f", x / 1000) : (x / 1000 >= 10 ? sprintf("%.1f", x / 1000) : sprintf("%.2f", x / 1000))) }
  function ratio(a, b, s) { return (a == "" || b == "" || b == 0) ? "-" : sprintf("%.2f%s", a / b, s) }
  # rr(KEY): the median of the per-run ratios KEY, and the value of each run
  function rr(key, s,   i, l) {
    if (cnt[key] == 0) return "-";
    l = "";
    for (i = 1; i <= cnt[key]; i++) l = l (i > 1 ? ", " : "") sprintf("%.2f", val[key, i]);
    return sprintf("%.2f%s (runs: %s)", median(key), s, l);
  }
  function row(name, k, rkey, bname,   a, b) {
    a = median(k "_p50"); b = median(k "_p99");
    printf "| %s | %s | %s | - | %s |\n", name, us(a), us(b), rkey == "" ? "baseline" : rr(rkey, "x " bname);
  }
  $2 != "" { cnt[$1]++; val[$1, cnt[$1]] = $2 + 0 }
  END {
    print "| path (64 B unless said) | p50 (us) | p99 (us) | throughput | p50 ratio (median of per-run ratios) |";
    print "|---|---:|---:|---:|---|";
    row("floor: one cache line between the two pinned processes", "floor", "", "");
    row("catmem pipe ping-pong, 2 processes", "catmem", "r_catmem_floor", "the floor (target <= 3x)");
    g = median("catmem_gbps");
    printf "| catmem 64 KiB one-way, 16 pushes in flight | - | - | %s | - |\n", g == "" ? "-" : sprintf("%.2f GB/s", g);
    row("catloop TCP ping-pong (shared memory)", "catloop", "", "");
    row("catnap TCP ping-pong (kernel loopback, demi API)", "catnap", "r_catnap_catloop", "catloop (target >= 10x)");
    row("kernel loopback TCP, blocking read/write", "ktcp", "r_ktcp_catloop", "catloop");
    row("Unix domain socket, blocking read/write", "unix", "r_unix_catloop", "catloop");
    if (redis == 1) {
      print "";
      print "| redis-benchmark | native req/s | catloop req/s | ratio (runs) | native p50 (us) | catloop p50 (us) | ratio (runs) |";
      print "|---|---:|---:|---:|---:|---:|---:|";
      split("c50_SET c50_GET c1_SET c1_GET", rs, " ");
      for (i = 1; i <= 4; i++) {
        k = rs[i]; split(k, kk, "_");
        rn = median("redis_" k "_rps_native"); rc = median("redis_" k "_rps_catloop");
        pn = median("redis_" k "_p50_native"); pc = median("redis_" k "_p50_catloop");
        printf "| -c %s %s | %s | %s | %s | %s | %s | %s |\n", substr(kk[1], 2), kk[2],
          rn == "" ? "-" : sprintf("%.0f", rn), rc == "" ? "-" : sprintf("%.0f", rc), rr("r_redis_" k "_rps", "x"),
          pn == "" ? "-" : sprintf("%.0f", pn), pc == "" ? "-" : sprintf("%.0f", pc), rr("r_redis_" k "_p50", "x");
      }
    }
  }' "$raw")

# ---- the plot: CDFs of the last run's round trips, log time axis
plot=$tmp/bench-ipc-rtt.png
[ "$write_doc" -eq 1 ] && plot=$root/$plot_rel
[ -n "$plot_out" ] && plot=$plot_out
plot_note=""
if ! "$PYTHON" - "$tmp/samples" "$plot" "$(date -u '+%Y-%m-%d %H:%M UTC'), load $load_before" <<'PY' 2>"$tmp/plot.err"; then
import sys, os
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
d, out, when = sys.argv[1], sys.argv[2], sys.argv[3]
series = [("rtt.floor", "floor: cache line, 2 processes"), ("rtt.catmem", "catmem pipe"),
          ("rtt.catloop", "catloop TCP"), ("rtt.unix", "Unix domain socket"),
          ("rtt.catnap", "catnap (kernel loopback TCP)"), ("rtt.ktcp", "kernel TCP, blocking")]
fig, ax = plt.subplots(figsize=(9, 5.2), dpi=110)
for f, label in series:
    p = os.path.join(d, f)
    if not os.path.exists(p):
        continue
    xs = sorted(int(l) / 1000.0 for l in open(p) if l.strip())
    if not xs:
        continue
    n = len(xs)
    ys = [100.0 * (i + 1) / n for i in range(n)]
    ax.step(xs, ys, where="post", label="%s (p50 %.2f us)" % (label, xs[n // 2]), linewidth=1.6)
ax.set_xscale("log")
ax.set_xlabel("64 B round trip (microseconds, log scale)")
ax.set_ylabel("percent of round trips at or below")
ax.set_ylim(0, 100)
ax.grid(True, which="both", alpha=0.3)
ax.set_title("IPC round-trip distributions, one run of scripts/bench-ipc.sh (" + when + ")", fontsize=10)
ax.legend(loc="lower right", fontsize=8)
fig.tight_layout()
fig.savefig(out)
PY
  plot_note="(plot not made: $(tail -n 1 "$tmp/plot.err"))"
  say "bench-ipc.sh: plot failed: $(tail -n 3 "$tmp/plot.err")"
fi

echo
echo "$table"
echo
echo "load average before / after: $load_before / $load_after; plot: $plot $plot_note"
if [ ${#failures[@]} -gt 0 ]; then
  echo
  echo "FAILED measurements: ${failures[*]}"
fi

# ---- doc/benchmarks.md
if [ "$write_doc" -eq 1 ]; then
  section=$tmp/section.md
  cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
  {
    echo "$heading"
    echo
    echo "Generated by \`scripts/bench-ipc.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) CPUs"
    echo "(${cpu:-unknown CPU}), Linux $(uname -r), build type $btype, DEMI_WAIT_SPIN_US=${DEMI_WAIT_SPIN_US:-default (50)}."
    echo "Load average before / after: $load_before / $load_after (other work on the machine shows up here)."
    echo
    echo "Every figure is the median over $runs runs after one warm-up round; every ratio compares figures"
    echo "of the same runs. Two processes pinned to CPUs 0 and 1. The floor and catmem come from"
    echo "\`catmem-bench $cm_rtt $cm_tput $cm_floor\` (catmem: 64 B push + pop round trips, the first tenth discarded;"
    echo "throughput: $cm_tput x 64 KiB, 16 pushes in flight). The floor is bounced by the same two processes through"
    echo "one cache line of a shared page, in 20 batches interleaved with 20 catmem batches; a run's catmem ratio is"
    echo "the median of the batches' ratios (each catmem batch against the floor batch just before it), as the"
    echo "host moves the two vCPUs between cores (floors of 90, 120 and 400 ns were seen on different hours)."
    echo "TCP paths from \`ipc-pingpong\`:"
    echo "catloop $pp_fast round trips, the kernel paths $pp_slow, a tenth more as warm-up; catloop and catnap"
    echo "through demi_push/demi_pop/demi_wait, kernel TCP (TCP_NODELAY) and the Unix socket through"
    echo "blocking write/read. redis-server 7.0 (no persistence) with"
    echo "\`redis-benchmark -t set,get -n $redis_n -c 50|1 --csv\`, server and benchmark both native, or both"
    echo "under \`demirun --libos catloop\` (their connections then go over shared memory)."
    echo
    echo "$table"
    echo
    echo "![64 B round-trip distributions]($(basename "$plot_rel"))"
    echo
    echo "The plot ($plot_rel) shows the last run's round trips as cumulative distributions."
    if [ ${#failures[@]} -gt 0 ]; then
      echo
      echo "Failed measurements (no figure): ${failures[*]}."
    fi
  } >"$section"
  bench_doc_section "$doc" "$heading" "$section"
  say "wrote $doc ($heading) and $plot_rel"
fi
[ ${#failures[@]} -eq 0 ]
