#!/usr/bin/env bash
# The one command that shows the project working: installs dependencies, builds build/, starts the
# TCP echo server example on 127.0.0.1 over catnap, runs the client against it, and runs
# scripts/bench.sh when there is one. Environment: DEMO_PORT (default: a free port from 12345 up).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

say() { printf '\n=== %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

say "setup: checking dependencies"
./scripts/setup.sh </dev/null || die "scripts/setup.sh failed"

say "build: build/ (-j$(nproc))"
build_log=$(mktemp /tmp/demi-demo-build.XXXXXX)
if ! { cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDEMI_BUILD_EXAMPLES=ON &&
       cmake --build build -j "$(nproc)"; } >"$build_log" 2>&1; then
  tail -n 60 "$build_log" >&2
  rm -f "$build_log"
  die "the build failed (last lines above)"
fi
rm -f "$build_log"
echo "built"

echo_bin=build/examples/tcp-echo
[ -x "$echo_bin" ] || die "$echo_bin was not built: the examples are missing or were disabled \
(check examples/CMakeLists.txt and -DDEMI_BUILD_EXAMPLES=ON)"

export DEMI_LIBOS=catnap
addr=127.0.0.1
port_busy() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }
port=${DEMO_PORT:-}
if [ -z "$port" ]; then
  port=12345
  while port_busy "$port"; do port=$((port + 1)); done
fi

server_pid=""
server_log=$(mktemp /tmp/demi-demo-server.XXXXXX)
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
# shellcheck disable=SC2317  # invoked through the EXIT trap
cleanup() {
  stop_server
  rm -f "$server_log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The server serves exactly the client runs below, then exits by itself (and flushes its output).
runs=(64:1000 65536:100)
say "server: DEMI_LIBOS=$DEMI_LIBOS $echo_bin --server $addr $port ${#runs[@]}"
linebuf=()
command -v stdbuf >/dev/null 2>&1 && linebuf=(stdbuf -oL -eL)
"${linebuf[@]}" "$echo_bin" --server "$addr" "$port" "${#runs[@]}" </dev/null >"$server_log" 2>&1 &
server_pid=$!

# Wait (up to 10 s) until the server listens, or stops.
for _ in $(seq 100); do
  port_busy "$port" && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if ! port_busy "$port"; then
  cat "$server_log" >&2
  die "the echo server did not start listening on $addr:$port"
fi
echo "server pid $server_pid listening on $addr:$port"

status=0
run_client() { # SIZE COUNT
  say "client: $echo_bin --client $addr $port $1 $2"
  if ! "$echo_bin" --client "$addr" "$port" "$1" "$2" </dev/null; then
    echo "demo: the client failed (size $1, count $2)" >&2
    status=1
  fi
}
for r in "${runs[@]}"; do
  run_client "${r%%:*}" "${r##*:}"
done

# Give the server up to 5 s to finish; stop it otherwise (e.g. when a client failed).
for _ in $(seq 50); do
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$server_pid" 2>/dev/null; then
  stop_server
  server_rc="killed"
else
  server_rc=0
  wait "$server_pid" || server_rc=$?
  server_pid=""
fi
say "server output (exit status: $server_rc)"
cat "$server_log"
if [ "$status" -eq 0 ] && [ "$server_rc" != 0 ]; then
  echo "demo: the server did not finish cleanly" >&2
  status=1
fi

if [ -f scripts/bench.sh ]; then
  say "benchmark: scripts/bench.sh"
  bash scripts/bench.sh </dev/null || { echo "demo: scripts/bench.sh failed" >&2; status=1; }
else
  say "benchmark: scripts/bench.sh is not there yet; skipped"
fi

say "demo $([ "$status" -eq 0 ] && echo finished || echo FAILED)"
exit "$status"
