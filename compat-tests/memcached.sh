#!/usr/bin/env bash
# memcached (4 worker threads) under the preload, checked by a Python text-protocol client
# (compat-tests/memcache_client.py: 10,000 keys with random binary values over 4 concurrent connections,
# set/get/multi-get/delete/append/incr, all byte-exact), then memcslap from libmemcached-tools as a
# second, C client (see compat-tests/lib.sh for modes).
# Usage: compat-tests/memcached.sh BUILD_DIR [--server-native|--client-native]

# shellcheck source=compat-tests/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
compat_init "$@" -- memcached memcslap memcstat
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

port=$(free_port tcp) || fail "no free port"
user=()
[ "$(id -u)" -eq 0 ] && user=(-u nobody)
start_server memcached 150 memcached -t 4 -p "$port" -U 0 -l 127.0.0.1 -m 256 -c 1024 "${user[@]}"
wait_listen memcached "$port"

log "Python client: 10,000 keys, 4 connections"
client_py 90 "$here/memcache_client.py" 127.0.0.1 "$port" --keys 10000 --conns 4 \
  >"$COMPAT_TMP/client.log" 2>&1 || fail "memcache_client.py failed (exit $?)"
log "$(tail -n 1 "$COMPAT_TMP/client.log")"
server_alive memcached

log "second run (reconnects; new seed, same server)"
client_py 90 "$here/memcache_client.py" 127.0.0.1 "$port" --keys 2000 --conns 8 --seed 7 \
  >"$COMPAT_TMP/client2.log" 2>&1 || fail "second memcache_client.py run failed (exit $?)"
log "$(tail -n 1 "$COMPAT_TMP/client2.log")"

for t in set get mget; do
  log "memcslap --test=$t --concurrency=8 --execute-number=2000 --binary"
  client 60 memcslap --servers="127.0.0.1:$port" --test="$t" --concurrency=8 --execute-number=2000 --binary \
    >"$COMPAT_TMP/memcslap-$t.log" 2>&1 || fail "memcslap --test=$t failed (exit $?)"
  grep -q "^Time to $t .* keys by *8 threads" "$COMPAT_TMP/memcslap-$t.log" || fail "memcslap --test=$t printed no timing"
  log "memcslap: $(grep "^Time to $t" "$COMPAT_TMP/memcslap-$t.log" | tr -s ' \t' ' ')"
done

out=$(client 30 memcstat --servers="127.0.0.1:$port" 2>&1) || fail "memcstat failed: $out"
threads=$(printf '%s\n' "$out" | sed -n 's/^[[:space:]]*threads: *\([0-9]*\).*/\1/p')
[ "$threads" = 4 ] || fail "memcstat reports threads '$threads', expected 4"
server_alive memcached

stop_server memcached TERM 0
pass
