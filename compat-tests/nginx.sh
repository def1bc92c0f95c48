#!/usr/bin/env bash
# nginx (master_process on, 2 worker processes forked from the master) under the preload, fetched with
# curl and wrk (see compat-tests/lib.sh for modes). Two server variants: sendfile on, sendfile off.
# Files of 0 B, 1 B, 1 KiB, 64 KiB, 1 MiB and 8 MiB of random content are fetched several times,
# sequentially, over one keep-alive connection and concurrently, plus a byte range and a 404, all compared
# by sha256; then wrk -t1 -c16 -d2s must report requests with no non-2xx responses and no socket errors.
# Usage: compat-tests/nginx.sh BUILD_DIR [--server-native|--client-native]

# shellcheck source=compat-tests/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PATH=$PATH:/usr/sbin:/sbin
compat_init "$@" -- nginx curl wrk

www=$COMPAT_TMP/www
mkdir -p "$www"
chmod 755 "$www"
declare -A size=([0b]=0 [1b]=1 [1k]=1024 [64k]=65536 [1m]=1048576 [8m]=8388608)
files=(0b 1b 1k 64k 1m 8m)
declare -A want=()
for f in "${files[@]}"; do
  rand_file "$www/$f.bin" "${size[$f]}"
  chmod 644 "$www/$f.bin"
  want[$f]=$(sha "$www/$f.bin")
done

nobody_line=""
if [ "$(id -u)" -eq 0 ]; then
  # Workers drop to nobody; everything they read is world-readable, everything they write is theirs.
  nobody_line="user nobody $(id -gn nobody 2>/dev/null || echo nogroup);"
fi

# fetch NAME URL_PATH OUT: one curl, fail on an HTTP or transport error.
fetch() {
  client 60 curl -sS -f --http1.1 --max-time 50 -o "$3" "http://127.0.0.1:$port/$2" \
    2>>"$COMPAT_TMP/curl.log" || fail "curl $2 ($1) failed (exit $?)"
}

# check_file NAME GOT
check_file() {
  local got
  got=$(sha "$2")
  [ "$got" = "${want[$1]}" ] ||
    fail "$1.bin: sha256 differs ($(stat -c %s "$2") bytes received, ${size[$1]} expected)"
}

run_variant() {
  local sendfile=$1 variant=sendfile-$1
  local conf=$COMPAT_TMP/nginx-$variant.conf prefix=$COMPAT_TMP/prefix-$variant
  local user_line=$nobody_line shm_check=0
  if [ "$COMPAT_LIBOS" = catloop ] && [ "$(id -u)" -eq 0 ] && [ "$sendfile" = on ]; then
    # catloop joins processes of one user only. Workers that stay root share memory with the preloaded
    # root clients (through the listener they inherit from the master); workers as nobody (variant off)
    # send those clients to kernel TCP.
    user_line="user root $(id -gn root);"
    [ "$COMPAT_MODE" = both ] && shm_check=1
  fi
  port=$(free_port tcp) || fail "no free port"
  mkdir -p "$prefix"
  chmod 755 "$prefix"
  : >"$COMPAT_TMP/$variant-error.log"
  cat >"$conf" <<EOF
$user_line
master_process on;
worker_processes 2;
daemon off;
pid $prefix/nginx.pid;
error_log $COMPAT_TMP/$variant-error.log notice;
events {
  worker_connections 512;
}
http {
  access_log off;
  default_type application/octet-stream;
  sendfile $sendfile;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 30;
  keepalive_requests 10000;
  client_body_temp_path $prefix/client_body;
  proxy_temp_path $prefix/proxy;
  fastcgi_temp_path $prefix/fastcgi;
  uwsgi_temp_path $prefix/uwsgi;
  scgi_temp_path $prefix/scgi;
  server {
    listen 127.0.0.1:$port;
    root $www;
    location / { }
  }
}
EOF
  start_server "nginx-$variant" 150 nginx -p "$prefix" -c "$conf" -e "$COMPAT_TMP/$variant-error.log"
  wait_listen "nginx-$variant" "$port"

  # The master forks two workers.
  local master="" n=0 _
  for _ in $(seq 1 100); do
    master=$(cat "$prefix/nginx.pid" 2>/dev/null)
    if [ -n "$master" ]; then
      n=$(pgrep -c -P "$master" 2>/dev/null)
      [ "${n:-0}" -ge 2 ] && break
    fi
    sleep 0.1
  done
  [ "${n:-0}" -ge 2 ] || fail "nginx master '${master}' has ${n:-0} worker processes, expected 2"
  log "$variant: master $master, $n workers, port $port"

  local f i out=$COMPAT_TMP/out
  mkdir -p "$out"
  log "$variant: each file 3 times, sequentially"
  for i in 1 2 3; do
    for f in "${files[@]}"; do
      fetch "$f" "$f.bin" "$out/$f.bin"
      check_file "$f" "$out/$f.bin"
      rm -f "$out/$f.bin"
    done
  done

  log "$variant: all files over one keep-alive connection"
  local -a args=()
  for f in "${files[@]}" "${files[@]}"; do
    args+=(-o "$out/ka-$f.bin" "http://127.0.0.1:$port/$f.bin")
  done
  client 60 curl -sS -f --http1.1 --max-time 50 "${args[@]}" 2>>"$COMPAT_TMP/curl.log" ||
    fail "curl keep-alive fetch of all files failed"
  for f in "${files[@]}"; do
    check_file "$f" "$out/ka-$f.bin"
  done
  rm -f "$out"/ka-*

  log "$variant: each file 3 times, 18 curls concurrently"
  local -a pids=() names=()
  for i in 1 2 3; do
    for f in "${files[@]}"; do
      client 60 curl -sS -f --http1.1 --max-time 50 -o "$out/c$i-$f.bin" "http://127.0.0.1:$port/$f.bin" \
        2>>"$COMPAT_TMP/curl.log" &
      pids+=($!)
      names+=("c$i-$f")
    done
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || fail "concurrent curl ${names[$i]} failed"
  done
  for i in 1 2 3; do
    for f in "${files[@]}"; do
      check_file "$f" "$out/c$i-$f.bin"
    done
  done
  rm -f "$out"/c*

  log "$variant: byte range and 404"
  client 60 curl -sS -f --http1.1 --max-time 50 -r 1000-3000999 -o "$out/range.bin" \
    "http://127.0.0.1:$port/8m.bin" 2>>"$COMPAT_TMP/curl.log" || fail "curl range request failed"
  tail -c +1001 "$www/8m.bin" | head -c 3000000 >"$out/range-want.bin"
  [ "$(sha "$out/range.bin")" = "$(sha "$out/range-want.bin")" ] ||
    fail "8m.bin bytes 1000-3000999: content differs ($(stat -c %s "$out/range.bin") bytes received)"
  local code
  code=$(client 30 curl -sS --http1.1 --max-time 20 -o /dev/null -w '%{http_code}' \
    "http://127.0.0.1:$port/missing.bin" 2>>"$COMPAT_TMP/curl.log")
  [ "$code" = 404 ] || fail "missing file: HTTP status '$code', expected 404"
  server_alive "nginx-$variant"

  log "$variant: wrk -t1 -c16 -d2s /1k.bin"
  local wlog=$COMPAT_TMP/wrk-$variant.log
  client 30 wrk -t1 -c16 -d2s --timeout 5s "http://127.0.0.1:$port/1k.bin" >"$wlog" 2>&1 &
  local wpid=$!
  if [ "$shm_check" = 1 ]; then
    # Mid-run, wrk's 16 connections are open: the workers map catloop connection files (shared memory).
    sleep 1
    local w mapped=0
    for w in $(pgrep -P "$master"); do
      grep -q 'demi-catloop-c\.' "/proc/$w/maps" 2>/dev/null && mapped=$((mapped + 1))
    done
    [ "$mapped" -ge 1 ] || fail "no nginx worker maps a catloop connection: the connections did not use shared memory"
    log "$variant: $mapped workers serve wrk over catloop shared memory"
  fi
  wait "$wpid" || fail "wrk failed (exit $?)"
  local reqs rps
  reqs=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' "$wlog")
  rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$wlog")
  if [ -z "$reqs" ] || [ "$reqs" -le 0 ]; then
    fail "wrk reported no requests"
  fi
  if grep -Eq 'Non-2xx|Socket errors' "$wlog"; then
    fail "wrk: $(grep -E 'Non-2xx|Socket errors' "$wlog" | tr -s ' ' | tr '\n' ';')"
  fi
  log "$variant: wrk $reqs requests, $rps requests/s, no errors"
  server_alive "nginx-$variant"

  # Graceful shutdown: the master tells the workers to finish and exits 0.
  stop_server "nginx-$variant" QUIT 0
  if grep -Eq '\[(alert|crit|emerg)\]' "$COMPAT_TMP/$variant-error.log"; then
    fail "nginx error log: $(grep -E '\[(alert|crit|emerg)\]' "$COMPAT_TMP/$variant-error.log" | head -n 5)"
  fi
  rm -rf "$out"
}

run_variant on
run_variant off
pass
