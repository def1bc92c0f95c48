#!/bin/bash
# Runs one example as a server and a client over 127.0.0.1 in separate processes and
# passes only if both exit 0. Usage: run_example_pair.sh BIN tcp|udp [size] [count]
set -u
bin="$1"; kind="$2"; size="${3:-64}"; count="${4:-1000}"
export DEMI_LIBOS="${DEMI_LIBOS:-catnap}"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
free_udp_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
if [ "$kind" = tcp ]; then
  port=$(free_port)
  srv_args=(--server 127.0.0.1 "$port" "$size" "$count")
  [ "$(basename "$bin")" = tcp-echo ] && srv_args=(--server 127.0.0.1 "$port" 1)
  cli_args=(--client 127.0.0.1 "$port" "$size" "$count")
else
  sport=$(free_udp_port); cport=$(free_udp_port)
  srv_args=(--server 127.0.0.1 "$sport" 127.0.0.1 "$cport" "$size" "$count")
  cli_args=(--client 127.0.0.1 "$cport" 127.0.0.1 "$sport" "$size" "$count")
fi
log=$(mktemp)
timeout 60 "$bin" "${srv_args[@]}" > "$log" 2>&1 &
spid=$!
trap 'kill $spid 2>/dev/null; rm -f "$log"' EXIT
# Wait until the server's socket exists (a fixed sleep loses UDP datagrams on a loaded machine).
if [ "$kind" = tcp ]; then ss_args=(-Hltn "sport = :$port"); else ss_args=(-Hlun "sport = :$sport"); fi
for _ in $(seq 1 200); do
  [ -n "$(ss "${ss_args[@]}" 2>/dev/null)" ] && break
  kill -0 $spid 2>/dev/null || break
  sleep 0.05
done
timeout 60 "$bin" "${cli_args[@]}"; crc=$?
wait $spid; src=$?
echo "--- server output"; cat "$log"
echo "client exit $crc, server exit $src"
[ $crc -eq 0 ] && [ $src -eq 0 ]
