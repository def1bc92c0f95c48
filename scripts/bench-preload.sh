#!/usr/bin/env bash
# Real servers native vs under the preload (demirun --libos catnap; server and client both preloaded):
# redis-benchmark (-t set,get -n 200000 -c 50, and -c 1 for latency), nginx + wrk (1 KiB file, -t1 -c32
# -d5s), sockperf TCP ping-pong p50/p99; native and preloaded alternate within each run, the figures are
# medians over the runs; plus an idle redis-server's CPU use over 10 s. Prints a markdown table with the
# ratios preloaded/native and writes it into doc/benchmarks.md under "## Preloaded servers vs native
# (issue 3)" (that section is regenerated; the rest of the file is kept).
# Usage: scripts/bench-preload.sh [--runs N] [--native-only] [--no-doc] [--libos NAME] [--build DIR] [--quick]
#   --native-only  measure native only (before the preload exists); the doc is not written
#   --quick        short runs (-n 20000, -d2s, -t 2) to check the script itself; the doc is not written
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$root/scripts/bench-lib.sh"
build=${DEMI_BENCH_BUILD:-$root/build}
doc=$root/doc/benchmarks.md
heading="## Preloaded servers vs native (issue 3)"
runs=3
native_only=0
write_doc=1
quick=0
libos=catnap

usage() {
  sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --native-only) native_only=1; shift ;;
    --no-doc) write_doc=0; shift ;;
    --libos) libos=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
case "$runs" in ''|*[!0-9]*|0) echo "bench-preload.sh: --runs needs a positive number" >&2; exit 2 ;; esac

# Workload sizes (the issue's figures; --quick shrinks them to test the script).
redis_n=200000      # requests per test at -c 50
redis_n1=50000      # requests per test at -c 1 (latency)
wrk_secs=5
sp_secs=5
idle_secs=10
if [ "$quick" -eq 1 ]; then
  redis_n=20000; redis_n1=5000; wrk_secs=2; sp_secs=2; idle_secs=3; write_doc=0
fi
[ "$native_only" -eq 0 ] || write_doc=0

PATH=$PATH:/usr/sbin:/sbin
for p in redis-server redis-benchmark redis-cli nginx wrk sockperf timeout ss; do
  command -v "$p" >/dev/null 2>&1 || { echo "bench-preload.sh: $p not installed (run scripts/setup.sh)" >&2; exit 1; }
done
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=$(command -v python3)

demirun=""
btype="-"
if [ "$native_only" -eq 0 ]; then
  if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" >/dev/null
  fi
  if grep -q '^DEMI_SANITIZE:BOOL=ON' "$build/CMakeCache.txt" || grep -q '^DEMI_TSAN:BOOL=ON' "$build/CMakeCache.txt"; then
    echo "bench-preload.sh: $build is a sanitizer build; point --build at an optimised one" >&2
    exit 1
  fi
  cmake --build "$build" -j"$(nproc)" --target demikernel_preload >/dev/null ||
    { echo "bench-preload.sh: cannot build demikernel_preload in $build (use --native-only until it exists)" >&2; exit 1; }
  demirun=$build/preload/demirun
  # A preloaded program whose LibOS cannot start must not quietly fall back to libc.
  export DEMI_PRELOAD_FALLBACK=abort
  [ -x "$demirun" ] || { echo "bench-preload.sh: no $demirun" >&2; exit 1; }
  btype=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$build/CMakeCache.txt")
fi

tmp=$(mktemp -d /tmp/demi-bench-preload.XXXXXX)
chmod 755 "$tmp"
pids=()
# shellcheck disable=SC2317  # invoked through the EXIT trap
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
  done
  sleep 0.3
  for pid in "${pids[@]}"; do
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

raw=$tmp/raw            # lines: KEY VARIANT VALUE
: >"$raw"
failures=()

say() { echo "$*" >&2; }

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wrap VARIANT: the command prefix for that variant (sets WRAP).
wrap() {
  WRAP=()
  [ "$1" = native ] || WRAP=("$demirun" --libos "$libos" --)
}

# start NAME VARIANT CMD...: background server (its own process group through timeout); sets SPID.
start() {
  local name=$1 v=$2
  shift 2
  wrap "$v"
  timeout -k 5 600 "${WRAP[@]}" "$@" >"$tmp/$name.log" 2>&1 </dev/null &
  SPID=$!
  pids+=("$SPID")
}

# wait_port PORT PID: until something listens on the port (20 s), or the server exits.
wait_port() {
  local _
  for _ in $(seq 1 200); do
    ss -Hltn "sport = :$1" | grep -q . && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

stop() {
  kill -TERM "$1" 2>/dev/null || true
  local _
  for _ in $(seq 1 100); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

record() { echo "$1 $2 $3" >>"$raw"; }

failed() { # failed WHAT VARIANT LOG
  failures+=("$1 ($2)")
  say "  FAILED: $1 ($2); last lines of $(basename "$3"):"
  tail -n 15 "$3" 2>/dev/null | sed 's/^/    /' >&2 || true
}

# to_us VALUE_WITH_UNIT (wrk: 812.00us, 1.20ms, 2.00s)
to_us() {
  awk -v x="$1" 'BEGIN {
    if (x ~ /us$/) { sub(/us$/, "", x); print x + 0 }
    else if (x ~ /ms$/) { sub(/ms$/, "", x); print x * 1000 }
    else if (x ~ /s$/) { sub(/s$/, "", x); print x * 1000000 }
    else print "" }'
}

bench_redis() { # VARIANT
  local v=$1 port pid log
  port=$(free_port)
  start "redis-$v" "$v" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$tmp" --logfile '' --protected-mode no
  pid=$SPID
  if ! wait_port "$port" "$pid"; then failed redis-server "$v" "$tmp/redis-$v.log"; stop "$pid"; return; fi
  wrap "$v"
  local c n t rps p50
  for c in 50 1; do
    n=$redis_n
    [ "$c" -eq 1 ] && n=$redis_n1
    log=$tmp/redis-bench-$v-c$c.csv
    if ! timeout 300 "${WRAP[@]}" redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -n "$n" -c "$c" --csv \
        >"$log" 2>&1; then
      failed "redis-benchmark -c $c" "$v" "$log"
      continue
    fi
    for t in SET GET; do
      # "SET","87719.30","0.300","0.088","0.287",...: test, rps, avg, min, p50 (ms)
      rps=$(awk -F'"' -v t="$t" '$2 == t { print $4 }' "$log")
      p50=$(awk -F'"' -v t="$t" '$2 == t { print $10 * 1000 }' "$log")
      if [ -z "$rps" ]; then failed "redis-benchmark -c $c $t" "$v" "$log"; continue; fi
      record "redis_c${c}_${t}_rps" "$v" "$rps"
      record "redis_c${c}_${t}_p50" "$v" "$p50"
      say "  redis -c $c $t ($v): $rps req/s, p50 $p50 us"
    done
  done
  stop "$pid"
}

bench_nginx() { # VARIANT
  local v=$1 port pid prefix=$tmp/nginx-$1 user_line=""
  port=$(free_port)
  mkdir -p "$prefix"
  chmod 755 "$prefix"
  [ "$(id -u)" -eq 0 ] && user_line="user nobody $(id -gn nobody 2>/dev/null || echo nogroup);"
  cat >"$prefix/nginx.conf" <<EOF
$user_line
master_process on;
worker_processes 1;
daemon off;
pid $prefix/nginx.pid;
error_log $prefix/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 60;
  keepalive_requests 1000000;
  client_body_temp_path $prefix/client_body;
  proxy_temp_path $prefix/proxy;
  fastcgi_temp_path $prefix/fastcgi;
  uwsgi_temp_path $prefix/uwsgi;
  scgi_temp_path $prefix/scgi;
  server {
    listen 127.0.0.1:$port;
    root $tmp/www;
    location / { }
  }
}
EOF
  start "nginx-$v" "$v" nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log"
  pid=$SPID
  if ! wait_port "$port" "$pid"; then failed nginx "$v" "$prefix/error.log"; stop "$pid"; return; fi
  sleep 0.2
  wrap "$v"
  local log=$tmp/wrk-$v.log rps p50 p99
  if ! timeout $((wrk_secs + 30)) "${WRAP[@]}" wrk -t1 -c32 -d"${wrk_secs}s" --latency \
      "http://127.0.0.1:$port/1k.bin" >"$log" 2>&1; then
    failed wrk "$v" "$log"; stop "$pid"; return
  fi
  if grep -Eq 'Non-2xx|Socket errors' "$log"; then
    failed "wrk (errors: $(grep -E 'Non-2xx|Socket errors' "$log" | tr -s ' ' | tr '\n' ' '))" "$v" "$log"
  fi
  rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$log")
  p50=$(to_us "$(awk '$1 == "50%" { print $2 }' "$log")")
  p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$log")")
  if [ -z "$rps" ]; then failed wrk "$v" "$log"; stop "$pid"; return; fi
  record nginx_rps "$v" "$rps"
  record nginx_p50 "$v" "$p50"
  record nginx_p99 "$v" "$p99"
  say "  nginx+wrk ($v): $rps req/s, p50 $p50 us, p99 $p99 us"
  stop "$pid"
}

bench_sockperf() { # VARIANT
  local v=$1 port pid log p50 p99
  port=$(free_port)
  start "sockperf-$v" "$v" sockperf server --tcp -i 127.0.0.1 -p "$port"
  pid=$SPID
  if ! wait_port "$port" "$pid"; then failed "sockperf server" "$v" "$tmp/sockperf-$v.log"; stop "$pid"; return; fi
  wrap "$v"
  log=$tmp/sockperf-pp-$v.log
  if ! timeout $((sp_secs + 30)) "${WRAP[@]}" sockperf ping-pong --tcp -i 127.0.0.1 -p "$port" -t "$sp_secs" \
      >"$log" 2>&1; then
    failed "sockperf ping-pong" "$v" "$log"; stop "$pid"; return
  fi
  p50=$(sed -n 's/.*percentile 50.000 = *\([0-9.]*\).*/\1/p' "$log" | tail -n 1)
  p99=$(sed -n 's/.*percentile 99.000 = *\([0-9.]*\).*/\1/p' "$log" | tail -n 1)
  if [ -z "$p50" ]; then failed "sockperf ping-pong" "$v" "$log"; stop "$pid"; return; fi
  record sockperf_p50 "$v" "$p50"
  record sockperf_p99 "$v" "$p99"
  say "  sockperf TCP ping-pong ($v): one-way p50 $p50 us, p99 $p99 us"
  stop "$pid"
}

# idle_cpu VARIANT: percent of one core an idle redis-server uses over idle_secs (after one PING).
idle_cpu() {
  local v=$1 port pid rpid s0 s1 tck
  port=$(free_port)
  start "redis-idle-$v" "$v" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$tmp" --logfile '' --protected-mode no
  pid=$SPID
  if ! wait_port "$port" "$pid"; then failed "idle redis-server" "$v" "$tmp/redis-idle-$v.log"; stop "$pid"; return; fi
  rpid=$(timeout 10 redis-cli -h 127.0.0.1 -p "$port" INFO server | tr -d '\r' | sed -n 's/^process_id://p')
  [ -n "$rpid" ] || { failed "idle redis-server (no process_id)" "$v" "$tmp/redis-idle-$v.log"; stop "$pid"; return; }
  sleep 1
  tck=$(getconf CLK_TCK)
  # utime + stime (fields 14 and 15; counted from after the ")" closing the command name)
  s0=$(sed 's/^.*) //' "/proc/$rpid/stat" | awk '{ print $12 + $13 }')
  sleep "$idle_secs"
  s1=$(sed 's/^.*) //' "/proc/$rpid/stat" | awk '{ print $12 + $13 }')
  local pct
  pct=$(awk -v a="$s0" -v b="$s1" -v t="$tck" -v s="$idle_secs" 'BEGIN { printf "%.2f", (b - a) / t / s * 100 }')
  record idle_cpu_pct "$v" "$pct"
  say "  idle redis-server ($v): $pct% of a core over $idle_secs s"
  stop "$pid"
}

mkdir -p "$tmp/www"
chmod 755 "$tmp/www"
head -c 1024 /dev/urandom >"$tmp/www/1k.bin"
chmod 644 "$tmp/www/1k.bin"

variants=(native)
[ "$native_only" -eq 1 ] || variants=(native preloaded)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
say "bench-preload: $runs runs x {${variants[*]}}, libos $libos; load average before: $load_before"
t0=$SECONDS
for i in $(seq 1 "$runs"); do
  # Alternate which variant goes first, so neither always runs on a warmer (or busier) machine.
  order=("${variants[@]}")
  if [ $((i % 2)) -eq 0 ] && [ ${#variants[@]} -eq 2 ]; then order=(preloaded native); fi
  say "run $i/$runs (${order[*]})"
  for b in redis nginx sockperf; do
    for v in "${order[@]}"; do
      "bench_$b" "$v"
    done
  done
done
say "idle CPU"
for v in "${variants[@]}"; do
  idle_cpu "$v"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
say "done in $((SECONDS - t0)) s; load average after: $load_after"

# ---- medians and the table
table=$(awk '
  function median(key, v,   n, i, j, t, a) {
    n = cnt[key, v]; if (n == 0) return "";
    for (i = 1; i <= n; i++) a[i] = val[key, v, i];
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t; }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2;
  }
  function fmt(x) {
    if (x == "") return "-";
    if (x >= 1000) return sprintf("%.0f", x);
    if (x >= 100) return sprintf("%.1f", x);
    return sprintf("%.2f", x);
  }
  { k = $1; v = $2; cnt[k, v]++; val[k, v, cnt[k, v]] = $3 + 0 }
  END {
    nrow = split("redis_c50_SET_rps redis_c50_GET_rps redis_c50_SET_p50 redis_c50_GET_p50 " \
                 "redis_c1_SET_rps redis_c1_GET_rps redis_c1_SET_p50 redis_c1_GET_p50 " \
                 "nginx_rps nginx_p50 nginx_p99 sockperf_p50 sockperf_p99", rows, " ");
    label["redis_c50_SET_rps"] = "redis-benchmark -c 50 | SET (req/s)";
    label["redis_c50_GET_rps"] = "redis-benchmark -c 50 | GET (req/s)";
    label["redis_c50_SET_p50"] = "redis-benchmark -c 50 | SET p50 (us)";
    label["redis_c50_GET_p50"] = "redis-benchmark -c 50 | GET p50 (us)";
    label["redis_c1_SET_rps"] = "redis-benchmark -c 1 | SET (req/s)";
    label["redis_c1_GET_rps"] = "redis-benchmark -c 1 | GET (req/s)";
    label["redis_c1_SET_p50"] = "redis-benchmark -c 1 | SET p50 (us)";
    label["redis_c1_GET_p50"] = "redis-benchmark -c 1 | GET p50 (us)";
    label["nginx_rps"] = "nginx + wrk, 1 KiB | requests/s";
    label["nginx_p50"] = "nginx + wrk, 1 KiB | latency p50 (us)";
    label["nginx_p99"] = "nginx + wrk, 1 KiB | latency p99 (us)";
    label["sockperf_p50"] = "sockperf TCP ping-pong | one-way latency p50 (us)";
    label["sockperf_p99"] = "sockperf TCP ping-pong | one-way latency p99 (us)";
    print "| benchmark | metric | native | preloaded | ratio preloaded/native |";
    print "|---|---|---:|---:|---:|";
    for (r = 1; r <= nrow; r++) {
      k = rows[r]; a = median(k, "native"); b = median(k, "preloaded");
      ratio = (a != "" && b != "" && a > 0) ? sprintf("%.2f", b / a) : "-";
      printf "| %s | %s | %s | %s |\n", label[k], fmt(a), fmt(b), ratio;
    }
  }' "$raw")
idle_native=$(awk '$1 == "idle_cpu_pct" && $2 == "native" { print $3 }' "$raw")
idle_pre=$(awk '$1 == "idle_cpu_pct" && $2 == "preloaded" { print $3 }' "$raw")
idle_line="Idle redis-server over ${idle_secs} s (utime+stime from /proc/PID/stat, after one PING): native ${idle_native:--}% of a core, preloaded ${idle_pre:--}% (target: under 5%)."

echo
echo "$table"
echo
echo "$idle_line"
if [ ${#failures[@]} -gt 0 ]; then
  echo
  echo "FAILED measurements: ${failures[*]}"
fi

# ---- doc/benchmarks.md
if [ "$write_doc" -eq 1 ]; then
  section=$tmp/section.md
  ncpu=$(nproc)
  cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
  {
    echo "$heading"
    echo
    echo "Generated by \`scripts/bench-preload.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $ncpu CPUs"
    echo "(${cpu:-unknown CPU}), Linux $(uname -r), build type $btype, DEMI_WAIT_SPIN_US=${DEMI_WAIT_SPIN_US:-default (50)}."
    echo "Load average before / after: $load_before / $load_after (other work on the machine shows up here)."
    echo
    echo "Unmodified Debian programs over 127.0.0.1, \"native\" on Linux sockets and \"preloaded\" under"
    echo "\`demirun --libos $libos\` (\`libdemikernel_preload.so\`), server and client both preloaded."
    echo "redis-server 7.0 (no persistence) with \`redis-benchmark -t set,get -n $redis_n -c 50 --csv\` and"
    echo "\`-n $redis_n1 -c 1\`; nginx 1.22 (master + 1 worker, sendfile on, access log off) with"
    echo "\`wrk -t1 -c32 -d${wrk_secs}s --latency\` on a 1 KiB file; \`sockperf ping-pong --tcp -t $sp_secs\` (14 B"
    echo "messages; sockperf reports one-way latency, half the round trip). Each figure is the median over"
    echo "$runs runs; every run measures both variants of each benchmark back to back, their order alternating."
    echo "For latencies a ratio below 1 means the preload is faster; for requests/s, above 1."
    echo
    echo "$table"
    echo
    echo "$idle_line"
    if [ ${#failures[@]} -gt 0 ]; then
      echo
      echo "Failed measurements (no figure): ${failures[*]}."
    fi
  } >"$section"
  bench_doc_section "$doc" "$heading" "$section"
  say "wrote $doc ($heading)"
fi
[ ${#failures[@]} -eq 0 ]
