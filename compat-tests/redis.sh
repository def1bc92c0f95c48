#!/usr/bin/env bash
# redis-server with redis-cli and redis-benchmark, under the preload (see compat-tests/lib.sh for modes).
# Two server variants: single-threaded, and --io-threads 2 (threads reading and writing sockets).
# Per variant: redis-cli SET/GET/INCR/LPUSH/LRANGE, three 1 MiB random values byte-exact (SET -x, GET,
# sha256), then redis-benchmark -t set,get -n 20000 -c 50 -q must report non-zero rates.
# Usage: compat-tests/redis.sh BUILD_DIR [--server-native|--client-native]

# shellcheck source=compat-tests/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
compat_init "$@" -- redis-server redis-cli redis-benchmark

# expect WHAT EXPECTED ACTUAL
expect() {
  [ "$2" = "$3" ] || fail "$1: expected '$2', got '$(printf '%s' "$3" | head -c 200)'"
}

run_variant() {
  local variant=$1
  shift
  local port dir
  port=$(free_port tcp) || fail "no free port"
  dir=$COMPAT_TMP/$variant
  mkdir -p "$dir"
  start_server "redis-$variant" 150 redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$dir" --daemonize no --logfile '' --protected-mode no "$@"
  wait_listen "redis-$variant" "$port"
  local cli=(redis-cli -h 127.0.0.1 -p "$port")
  local out

  log "$variant: PING / SET / GET / INCR / LPUSH / LRANGE"
  out=$(client 20 "${cli[@]}" PING 2>&1); expect PING PONG "$out"
  out=$(client 20 "${cli[@]}" SET greeting "hello world" 2>&1); expect SET OK "$out"
  out=$(client 20 "${cli[@]}" GET greeting 2>&1); expect GET "hello world" "$out"
  out=$(client 20 "${cli[@]}" GET missing-key 2>&1); expect "GET missing" "" "$out"
  # 500 INCRs over one connection (-r repeats the command).
  client 30 "${cli[@]}" -r 500 INCR counter >"$COMPAT_TMP/incr-$variant.log" 2>&1 || fail "redis-cli -r 500 INCR failed"
  expect "INCR replies" 500 "$(tail -n 1 "$COMPAT_TMP/incr-$variant.log")"
  out=$(client 20 "${cli[@]}" INCR counter 2>&1); expect INCR 501 "$out"
  out=$(client 20 "${cli[@]}" LPUSH mylist one two three 2>&1); expect LPUSH 3 "$out"
  out=$(client 20 "${cli[@]}" LPUSH mylist four 2>&1); expect LPUSH 4 "$out"
  out=$(client 20 "${cli[@]}" LRANGE mylist 0 -1 2>&1); expect LRANGE "$(printf 'four\nthree\ntwo\none')" "$out"
  out=$(client 20 "${cli[@]}" LLEN mylist 2>&1); expect LLEN 4 "$out"

  log "$variant: three 1 MiB random values, byte-exact"
  local i f
  for i in 1 2 3; do
    f=$COMPAT_TMP/big$i.bin
    [ -f "$f" ] || rand_file "$f" 1048576
    out=$(client 30 "${cli[@]}" -x SET "big$i" <"$f" 2>&1); expect "SET big$i (1 MiB)" OK "$out"
  done
  for i in 1 2 3; do
    f=$COMPAT_TMP/big$i.bin
    out=$(client 20 "${cli[@]}" STRLEN "big$i" 2>&1); expect "STRLEN big$i" 1048576 "$out"
    # redis-cli prints the raw bytes and a newline when stdout is not a terminal.
    client 30 "${cli[@]}" --raw GET "big$i" >"$COMPAT_TMP/got$i.out" 2>"$COMPAT_TMP/get-$variant.log" ||
      fail "redis-cli GET big$i failed"
    expect "GET big$i size (value + newline)" 1048577 "$(stat -c %s "$COMPAT_TMP/got$i.out")"
    head -c 1048576 "$COMPAT_TMP/got$i.out" >"$COMPAT_TMP/got$i.bin"
    expect "GET big$i sha256" "$(sha "$f")" "$(sha "$COMPAT_TMP/got$i.bin")"
    rm -f "$COMPAT_TMP/got$i.out" "$COMPAT_TMP/got$i.bin"
  done
  # The same values again, several at once (concurrent connections).
  local -a pids=()
  for i in 1 2 3; do
    client 30 "${cli[@]}" --raw GET "big$i" >"$COMPAT_TMP/cgot$i.out" 2>/dev/null &
    pids+=($!)
  done
  for i in 1 2 3; do
    wait "${pids[$((i - 1))]}" || fail "concurrent redis-cli GET big$i failed"
    head -c 1048576 "$COMPAT_TMP/cgot$i.out" >"$COMPAT_TMP/cgot$i.bin"
    expect "concurrent GET big$i sha256" "$(sha "$COMPAT_TMP/big$i.bin")" "$(sha "$COMPAT_TMP/cgot$i.bin")"
    rm -f "$COMPAT_TMP/cgot$i.out" "$COMPAT_TMP/cgot$i.bin"
  done
  server_alive "redis-$variant"

  log "$variant: redis-benchmark -t set,get -n 20000 -c 50 -q"
  local blog=$COMPAT_TMP/bench-$variant.log
  client 90 redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -n 20000 -c 50 -q >"$blog" 2>&1 ||
    fail "redis-benchmark failed (exit $?)"
  # -q writes progress lines ending in \r; the final line per test is "SET: 87719.30 requests per second, ..."
  local t rate
  for t in SET GET; do
    rate=$(tr '\r' '\n' <"$blog" | sed -n "s/^$t: \([0-9.]*\) requests per second.*/\1/p" | tail -n 1)
    [ -n "$rate" ] || fail "redis-benchmark printed no $t rate"
    awk -v r="$rate" 'BEGIN { exit !(r > 0) }' || fail "redis-benchmark $t rate is $rate"
    log "$variant: redis-benchmark $t $rate requests/s"
  done
  out=$(client 20 "${cli[@]}" DBSIZE 2>&1)
  [ "${out:-0}" -ge 6 ] 2>/dev/null || fail "DBSIZE after the benchmark: '$out'"
  server_alive "redis-$variant"
  stop_server "redis-$variant" TERM 0
}

run_variant single
run_variant iothreads --io-threads 2 --io-threads-do-reads yes
pass
