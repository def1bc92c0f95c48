#!/usr/bin/env bash
# Installs every Debian 12 package the project needs (build, tests, every LibOS, compat tests,
# benchmarks, docs). Idempotent: prints nothing when all is present, one line when installing,
# apt's output only when apt fails.
set -euo pipefail

PACKAGES=(
  # toolchain and build
  build-essential cmake g++ pkg-config
  # unit and system tests
  googletest libgtest-dev
  # core: YAML configuration
  libyaml-dev
  # catcollar (io_uring)
  liburing-dev
  # catnip (DPDK)
  libdpdk-dev dpdk
  # catmint (RDMA verbs)
  libibverbs-dev rdma-core librdmacm-dev
  # catpowder (AF_PACKET / AF_XDP) and the XDP program
  libbpf-dev libxdp-dev clang llvm libclang-rt-14-dev
  # compatibility tests: real programs under the preload
  redis-server redis-tools nginx memcached libmemcached-tools sockperf iperf3 wrk curl
  # network test hosts: namespaces, veth, loss injection
  iproute2 iputils-ping nftables iptables procps psmisc
  # catpowder tests: offloads off on the kernel peer's veth, captures read back
  ethtool tcpdump
  # benchmarks and their plots
  python3 python3-matplotlib hyperfine linux-perf
  # man pages
  man-db groff-base
)

# One dpkg-query for all names; a name dpkg has never heard of prints nothing and stays missing.
declare -A ok=()
while read -r name status; do
  [ "$status" = ii ] && ok[$name]=1
done < <(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PACKAGES[@]}" 2>/dev/null || true)
missing=()
for p in "${PACKAGES[@]}"; do
  [ -n "${ok[$p]:-}" ] || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    echo "setup: need root to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "setup: installing ${#missing[@]} package(s): ${missing[*]}"

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp /tmp/demi-setup.XXXXXX)
policy=/usr/sbin/policy-rc.d
own_policy=0
# shellcheck disable=SC2317  # invoked through the EXIT trap
cleanup() {
  if [ "$own_policy" -eq 1 ]; then "${SUDO[@]}" rm -f "$policy"; fi
  rm -f "$log"
}
trap cleanup EXIT

# Daemons (redis, nginx, memcached) must not be left running: tests start them when they need them.
# Debian's maintainer scripts ask policy-rc.d; exit code 101 means "do not start". Install one only
# for the duration of this run, and only if the machine has none of its own.
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod 755 "$policy"
  own_policy=1
fi

APT_OPTS=(-q -y -o DPkg::Lock::Timeout=600
          -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

update_ok=1
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 update \
  </dev/null >"$log" 2>&1 || update_ok=0
if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" install \
     --no-install-recommends "${missing[@]}" </dev/null >>"$log" 2>&1; then
  [ "$update_ok" -eq 1 ] || echo "setup: apt-get update failed as well" >&2
  cat "$log" >&2
  echo "setup: apt-get install failed" >&2
  exit 1
fi

# Belt and braces: if the machine's own policy let a daemon we just installed start, stop it.
for svc in "${missing[@]}"; do
  case "$svc" in redis-server|nginx|memcached) ;; *) continue ;; esac
  pgrep -x "$svc" >/dev/null 2>&1 || continue
  if [ -d /run/systemd/system ]; then
    "${SUDO[@]}" systemctl stop "$svc" </dev/null >/dev/null 2>&1 || true
  elif [ -x "/etc/init.d/$svc" ]; then
    "${SUDO[@]}" "/etc/init.d/$svc" stop </dev/null >/dev/null 2>&1 || true
  fi
done
exit 0
