#!/usr/bin/env bash
# sockperf server with sockperf ping-pong and throughput clients (-t 3 each), over TCP and over UDP, under
# the preload (see compat-tests/lib.sh for modes). Ping-pong must report observations and percentiles
# with no dropped, duplicated or out-of-order messages; throughput must report a positive message rate;
# nobody may print an error.
# Usage: compat-tests/sockperf.sh BUILD_DIR [--server-native|--client-native]

# shellcheck source=compat-tests/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
compat_init "$@" -- sockperf

# no_errors LOG WHAT
no_errors() {
  if grep -aiq 'error' "$1"; then
    fail "$2 printed: $(grep -ai 'error' "$1" | head -n 3 | tr '\n' ';')"
  fi
}

run_proto() {
  local proto=$1 port
  local -a pflag=()
  [ "$proto" = tcp ] && pflag=(--tcp)
  port=$(free_port both) || fail "no free port"
  start_server "sockperf-$proto" 60 sockperf server "${pflag[@]}" -i 127.0.0.1 -p "$port"
  wait_listen "sockperf-$proto" "$port" "$proto"

  log "$proto: sockperf ping-pong -t 3"
  local plog=$COMPAT_TMP/pingpong-$proto.log
  client 30 sockperf ping-pong "${pflag[@]}" -i 127.0.0.1 -p "$port" -t 3 >"$plog" 2>&1 ||
    fail "sockperf ping-pong ($proto) failed (exit $?)"
  local obs p50 p99 drops
  obs=$(sed -n 's/.*Total \([0-9]*\) observations.*/\1/p' "$plog" | tail -n 1)
  p50=$(sed -n 's/.*percentile 50.000 = *\([0-9.]*\).*/\1/p' "$plog" | tail -n 1)
  p99=$(sed -n 's/.*percentile 99.000 = *\([0-9.]*\).*/\1/p' "$plog" | tail -n 1)
  drops=$(grep -a '# dropped messages' "$plog" | tail -n 1)
  if [ -z "$obs" ] || [ "$obs" -le 0 ] || [ -z "$p50" ] || [ -z "$p99" ]; then
    fail "sockperf ping-pong ($proto) reported no observations or percentiles"
  fi
  case "$drops" in
    *"dropped messages = 0; # duplicated messages = 0; # out-of-order messages = 0"*) ;;
    *) fail "sockperf ping-pong ($proto): ${drops:-no message counts printed}" ;;
  esac
  no_errors "$plog" "sockperf ping-pong ($proto)"
  log "$proto: ping-pong $obs observations, one-way latency p50 $p50 us, p99 $p99 us, no drops"
  server_alive "sockperf-$proto"

  log "$proto: sockperf throughput -t 3"
  local tlog=$COMPAT_TMP/throughput-$proto.log rate
  client 30 sockperf throughput "${pflag[@]}" -i 127.0.0.1 -p "$port" -t 3 >"$tlog" 2>&1 ||
    fail "sockperf throughput ($proto) failed (exit $?)"
  rate=$(sed -n 's/.*Summary: Message Rate is \([0-9]*\) .*/\1/p' "$tlog" | tail -n 1)
  if [ -z "$rate" ] || [ "$rate" -le 0 ]; then
    fail "sockperf throughput ($proto) reported no message rate"
  fi
  no_errors "$tlog" "sockperf throughput ($proto)"
  log "$proto: throughput $rate msg/s"
  server_alive "sockperf-$proto"
  no_errors "$COMPAT_TMP/sockperf-$proto.log" "sockperf server ($proto)"
  # sockperf's server dies of SIGTERM (status 143) or exits 0.
  stop_server "sockperf-$proto" TERM 0 143
}

run_proto tcp
run_proto udp
pass
