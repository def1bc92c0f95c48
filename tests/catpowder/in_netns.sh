#!/bin/bash
# Test launcher (ctest's CROSSCOMPILING_EMULATOR for contract_catpowder): runs the command as catpowder
# on one end of a fresh veth pair in its own network namespace, with CONTRACT_ADDR set to its address.
# Listing the tests (gtest discovery) runs directly. Skips (77) without root or namespaces.
here="$(cd "$(dirname "$0")" && pwd)"
for a in "$@"; do
  case "$a" in --gtest_list_tests) exec "$@" ;; esac
done
# shellcheck source=netns.sh
. "$here/netns.sh"
cp_netns_up raw
ip netns exec "$CP_NS_A" env $(cp_env_a) CONTRACT_ADDR="$CP_IP_A" "$@"
