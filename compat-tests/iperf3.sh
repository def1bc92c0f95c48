#!/usr/bin/env bash
# iperf3 server (-s -1: one test, then exit 0) and client under the preload (see compat-tests/lib.sh for
# modes): TCP -t 3, TCP reverse (-R, the server sends) -t 3, and UDP -t 2. Each must report a positive
# bitrate in its JSON result with no error, and the server must exit 0 after its one test.
# Usage: compat-tests/iperf3.sh BUILD_DIR [--server-native|--client-native]

# shellcheck source=compat-tests/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
compat_init "$@" -- iperf3

# check_json FILE: prints "sent_bits_per_second received_bits_per_second" or fails.
check_json() {
  "$PYTHON" - "$1" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print("unreadable JSON: %s" % e)
    sys.exit(1)
if d.get("error"):
    print("iperf3 error: %s" % d["error"])
    sys.exit(1)
end = d.get("end", {})
if "sum_sent" in end:
    sent, recv = end["sum_sent"], end["sum_received"]
else:  # UDP
    sent = recv = end.get("sum", {})
s, r = sent.get("bits_per_second", 0), recv.get("bits_per_second", 0)
if not (s > 0 and r > 0 and recv.get("bytes", 0) > 0):
    print("no positive bitrate: sent %s bit/s, received %s bit/s" % (s, r))
    sys.exit(1)
print("%.0f %.0f" % (s, r))
EOF
}

# run NAME SECONDS CLIENT_ARGS...
run() {
  local name=$1 secs=$2 port out res
  shift 2
  port=$(free_port both) || fail "no free port"
  start_server "iperf3-$name" 60 iperf3 -s -1 -B 127.0.0.1 -p "$port"
  wait_listen "iperf3-$name" "$port"
  log "$name: iperf3 -c -t $secs $*"
  out=$COMPAT_TMP/client-$name.log
  client $((secs + 30)) iperf3 -c 127.0.0.1 -p "$port" -t "$secs" -J "$@" >"$out" 2>&1 ||
    fail "iperf3 client ($name) failed (exit $?): $(check_json "$out")"
  res=$(check_json "$out") || fail "iperf3 ($name): $res"
  read -r sent recv <<<"$res"
  log "$name: sender $(awk -v b="$sent" 'BEGIN { printf "%.2f", b / 1e9 }') Gbit/s," \
    "receiver $(awk -v b="$recv" 'BEGIN { printf "%.2f", b / 1e9 }') Gbit/s"
  wait_exit "iperf3-$name" 15
  [ "$EXIT_STATUS" = 0 ] || fail "iperf3 server ($name) exit status $EXIT_STATUS after its one test (124: still running)"
}

run tcp 3
run tcp-reverse 3 -R
run udp 2 -u -b 1G
pass
