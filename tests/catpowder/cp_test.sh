#!/bin/bash
# catpowder system tests over a veth pair between two network namespaces (netns.sh).
# Usage: cp_test.sh BUILD_DIR CASE; CASE is one of
#   udp-kernel   catpowder UDP server and client against kernel (catnap) peers
#   udp-pair     catpowder against catpowder
#   nsstat       demi-nsstat shows a live process's counters; the file goes away at exit
#   pcap         DEMI_PCAP writes a file tcpdump -r reads, with every frame of the exchange
#   tcp-kernel   catpowder TCP client and server against kernel peers, 1 MiB byte-exact both ways
#   tcp-pair     catpowder against catpowder over TCP
# Exit 0 pass, 1 fail, 77 skip (with the reason).
set -u
build="$1"; case_="$2"
ex="$build/examples"
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=netns.sh
. "$here/netns.sh"
T=60  # per program; the ctest timeout bounds the whole case

fail() { echo "FAIL: $*"; exit 1; }
logs=$(mktemp -d /tmp/cptest.XXXXXX)
cleanup() { cp_netns_down; rm -rf "$logs"; }

# bg NAME cmd...: start in the background, logging to $logs/NAME; its pid in BGPID.
bg() { local n="$1"; shift; "$@" >"$logs/$n" 2>&1 & BGPID=$!; }
show() { for f in "$@"; do echo "--- $f"; cat "$logs/$f"; done; }
# wait_pid PID NAME: its exit status, with its log on failure.
wait_ok() { wait "$1"; local rc=$?; [ $rc -eq 0 ] || { show "$2"; fail "$2 exited $rc"; }; }

# A catpowder process must have the stack up before its peer starts: wait for its counters file.
wait_stack() {
  local pid="$1" i
  for i in $(seq 1 100); do
    [ -e "/dev/shm/demi-netstack.$pid" ] && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
# The pid of the real program under ip netns exec / env / timeout (they exec, so it is the same pid).
start_a() { local n="$1"; shift; bg "$n" ip netns exec "$CP_NS_A" env $(cp_env_a) timeout $T "$@"; }
start_b_cp() { local n="$1"; shift; bg "$n" ip netns exec "$CP_NS_B" env $(cp_env_b) timeout $T "$@"; }
start_b_kernel() { local n="$1"; shift; bg "$n" ip netns exec "$CP_NS_B" env DEMI_LIBOS=catnap timeout $T "$@"; }
# timeout forks the program: the stack runs in timeout's child.
child_of() { local i c; for i in $(seq 1 100); do c=$(pgrep -P "$1" | head -1); [ -n "$c" ] && { echo "$c"; return; }; sleep 0.02; done; }

case "$case_" in
udp-kernel)
  cp_netns_up kernel; trap cleanup EXIT
  # catpowder serves, the kernel asks.
  start_a srv "$ex/udp-ping-pong" --server $CP_IP_A 40000 $CP_IP_B 40001 64 200; s=$BGPID
  wait_stack "$(child_of "$s")" || { show srv; fail "server did not start"; }
  start_b_kernel cli "$ex/udp-ping-pong" --client $CP_IP_B 40001 $CP_IP_A 40000 64 200; c=$BGPID
  wait_ok "$c" cli; wait_ok "$s" srv
  # The kernel serves, catpowder asks, with datagrams near the MTU.
  start_b_kernel srv2 "$ex/udp-ping-pong" --server $CP_IP_B 40003 $CP_IP_A 40002 1472 100; s=$BGPID
  sleep 0.3
  start_a cli2 "$ex/udp-ping-pong" --client $CP_IP_A 40002 $CP_IP_B 40003 1472 100; c=$BGPID
  wait_ok "$c" cli2; wait_ok "$s" srv2
  show cli cli2
  ;;
udp-pair)
  cp_netns_up raw; trap cleanup EXIT
  start_a srv "$ex/udp-ping-pong" --server $CP_IP_A 40000 $CP_IP_B 40001 512 500; s=$BGPID
  wait_stack "$(child_of "$s")" || { show srv; fail "server did not start"; }
  start_b_cp cli "$ex/udp-ping-pong" --client $CP_IP_B 40001 $CP_IP_A 40000 512 500; c=$BGPID
  wait_ok "$c" cli; wait_ok "$s" srv
  show cli
  ;;
nsstat)
  cp_netns_up kernel; trap cleanup EXIT
  tool="$build/libos/nsglue/demi-nsstat"
  # The server waits for 60 datagrams and gets 50: it stays up (5 s idle) while the tool looks at it.
  start_a srv "$ex/udp-ping-pong" --server $CP_IP_A 40000 $CP_IP_B 40001 64 60; s=$BGPID
  p=$(child_of "$s")
  wait_stack "$p" || { show srv; fail "server did not start"; }
  start_b_kernel cli "$ex/udp-ping-pong" --client $CP_IP_B 40001 $CP_IP_A 40000 64 50; c=$BGPID
  wait_ok "$c" cli
  out=$("$tool" "$p") || { echo "$out"; fail "demi-nsstat $p failed"; }
  echo "$out"
  echo "$out" | grep -q "^pid $p (catpowder)" || fail "no header line"
  # At least 50 datagrams each way went through the stack and the device.
  for n in udp_rx udp_tx eth_rx eth_tx dev_rx_frames dev_tx_frames; do
    v=$(echo "$out" | awk -v n=$n '$1 == n { print $2 }')
    [ -n "$v" ] && [ "$v" -ge 50 ] || fail "$n is '$v', expected >= 50"
  done
  echo "$out" | grep -q "^udp_rx_bad_cksum .*dropped: UDP checksum" || fail "descriptions missing"
  "$tool" | grep -q "^pid $p (catpowder)" || fail "demi-nsstat without a pid does not list $p"
  "$tool" -n "$p" | grep -q " 0  " && fail "-n printed a zero counter"
  wait "$s"  # exits 1 after its idle time: fewer datagrams than it asked for
  [ -e "/dev/shm/demi-netstack.$p" ] && fail "counters file left behind after exit"
  # A stale file of a dead process is ignored, and removed by the next stack.
  stale=999999; while kill -0 $stale 2>/dev/null; do stale=$((stale - 1)); done
  cp "/dev/null" "/dev/shm/demi-netstack.$stale"
  "$tool" "$stale" >/dev/null 2>&1 && fail "demi-nsstat accepted a dead pid's file"
  rm -f "/dev/shm/demi-netstack.$stale"
  "$tool" "$p" >/dev/null 2>&1 && fail "demi-nsstat accepted an exited process"
  echo "ok"
  ;;
pcap)
  cp_netns_up kernel; trap cleanup EXIT
  command -v tcpdump >/dev/null || cp_skip "tcpdump not installed (scripts/setup.sh installs it)"
  pc="$logs/a.pcap"
  bg srv ip netns exec "$CP_NS_A" env $(cp_env_a) DEMI_PCAP="$pc" timeout $T \
      "$ex/udp-ping-pong" --server $CP_IP_A 40000 $CP_IP_B 40001 100 20; s=$BGPID
  wait_stack "$(child_of "$s")" || { show srv; fail "server did not start"; }
  start_b_kernel cli "$ex/udp-ping-pong" --client $CP_IP_B 40001 $CP_IP_A 40000 100 20; c=$BGPID
  wait_ok "$c" cli; wait_ok "$s" srv
  out=$(tcpdump -r "$pc" -n -nn 2>&1) || { echo "$out"; fail "tcpdump -r failed"; }
  echo "$out" | head -8
  # 20 datagrams in, 20 out, plus ARP.
  [ "$(echo "$out" | grep -c "$CP_IP_B.40001 > $CP_IP_A.40000: UDP, length 100")" -eq 20 ] || fail "not 20 datagrams in"
  [ "$(echo "$out" | grep -c "$CP_IP_A.40000 > $CP_IP_B.40001: UDP, length 100")" -eq 20 ] || fail "not 20 datagrams out"
  echo "$out" | grep -q "ARP, Reply $CP_IP_A is-at" || fail "our ARP reply is missing"
  [ "$(stat -c %a "$pc")" = 600 ] || fail "capture file is not 0600"
  echo "ok"
  ;;
tcp-kernel)
  cp_netns_up kernel; trap cleanup EXIT
  # catpowder accepts from a kernel client (1 MiB each way, byte-exact) ...
  start_a srv "$ex/tcp-echo" --server $CP_IP_A 40000 1; s=$BGPID
  wait_stack "$(child_of "$s")" || { show srv; fail "server did not start"; }
  start_b_kernel cli "$ex/tcp-echo" --client $CP_IP_A 40000 65536 16; c=$BGPID
  wait_ok "$c" cli; wait_ok "$s" srv
  # ... and connects to a kernel server.
  start_b_kernel srv2 "$ex/tcp-echo" --server $CP_IP_B 40001 1; s=$BGPID
  sleep 0.3
  start_a cli2 "$ex/tcp-echo" --client $CP_IP_B 40001 65536 16; c=$BGPID
  wait_ok "$c" cli2; wait_ok "$s" srv2
  show cli cli2
  ;;
tcp-pair)
  cp_netns_up raw; trap cleanup EXIT
  start_a srv "$ex/tcp-echo" --server $CP_IP_A 40000 1; s=$BGPID
  wait_stack "$(child_of "$s")" || { show srv; fail "server did not start"; }
  start_b_cp cli "$ex/tcp-echo" --client $CP_IP_A 40000 65536 16; c=$BGPID
  wait_ok "$c" cli; wait_ok "$s" srv
  show cli
  ;;
*)
  echo "unknown case $case_"; exit 2
  ;;
esac
exit 0
