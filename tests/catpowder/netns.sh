#!/bin/bash
# Sourced by the catpowder tests: two network namespaces joined by a veth pair, names unique per PID,
# removed by an EXIT trap. Side A's veth has no IPv4 address (catpowder owns 10.77.0.1 there); side B's
# has 10.77.0.2/24 when a kernel peer is wanted (cp_netns_up kernel) or none (cp_netns_up raw).
# Skips the test (exit 77) with the reason when namespaces cannot be made.
CP_NS_A="cpa$$"
CP_NS_B="cpb$$"
CP_IF_A="cpva$$"
CP_IF_B="cpvb$$"
CP_IP_A=10.77.0.1
CP_IP_B=10.77.0.2

cp_netns_down() {
  ip netns del "$CP_NS_A" 2>/dev/null
  ip netns del "$CP_NS_B" 2>/dev/null
  ip link del "$CP_IF_A" 2>/dev/null
  return 0
}

cp_skip() { echo "SKIP: $*"; exit 77; }

# cp_netns_up kernel|raw
cp_netns_up() {
  [ "$(id -u)" -eq 0 ] || cp_skip "needs root for network namespaces"
  command -v ip >/dev/null || cp_skip "ip (iproute2) not installed"
  trap 'cp_netns_down' EXIT
  ip netns add "$CP_NS_A" 2>/dev/null || cp_skip "cannot create a network namespace"
  ip netns add "$CP_NS_B" || cp_skip "cannot create a second network namespace"
  ip link add "$CP_IF_A" type veth peer name "$CP_IF_B" || cp_skip "cannot create a veth pair"
  ip link set "$CP_IF_A" netns "$CP_NS_A"
  ip link set "$CP_IF_B" netns "$CP_NS_B"
  for ns in "$CP_NS_A" "$CP_NS_B"; do
    # No IPv6 chatter (router solicitations, DAD) on the test link.
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 2>/dev/null
    ip netns exec "$ns" ip link set lo up
  done
  ip -n "$CP_NS_A" link set "$CP_IF_A" up
  ip -n "$CP_NS_B" link set "$CP_IF_B" up
  if [ "$1" = kernel ]; then
    ip -n "$CP_NS_B" addr add "$CP_IP_B/24" dev "$CP_IF_B"
    # A kernel sender would hand the veth 64 KiB TSO/GSO frames and partial checksums; a packet
    # socket sees them as they are. Make it segment and checksum as a NIC would.
    if command -v ethtool >/dev/null; then
      ip netns exec "$CP_NS_B" ethtool -K "$CP_IF_B" tso off gso off gro off tx off >/dev/null 2>&1
    fi
  fi
}

# cp_run A|B cmd...: run in side A's or B's namespace, configured for catpowder on that side's veth.
cp_env_a() { echo "DEMI_LIBOS=catpowder DEMI_IFNAME=$CP_IF_A DEMI_LOCAL_IPV4=$CP_IP_A"; }
cp_env_b() { echo "DEMI_LIBOS=catpowder DEMI_IFNAME=$CP_IF_B DEMI_LOCAL_IPV4=$CP_IP_B"; }
cp_in_a() { ip netns exec "$CP_NS_A" env $(cp_env_a) "$@"; }
cp_in_b_catpowder() { ip netns exec "$CP_NS_B" env $(cp_env_b) "$@"; }
cp_in_b_kernel() { ip netns exec "$CP_NS_B" env DEMI_LIBOS=catnap "$@"; }
