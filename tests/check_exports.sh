#!/bin/sh
# Fails if the shared library exports any defined symbol that is not demi_*.
set -eu
lib="$1"
syms=$(nm -D --defined-only "$lib" | awk '{print $3}' | sed 's/@.*//' | grep -v '^$' | sort -u)
[ -n "$syms" ] || { echo "no symbols exported from $lib"; exit 1; }
bad=$(printf '%s\n' "$syms" | grep -v -e '^demi_' -e '^DEMIKERNEL_0$' || true)
if [ -n "$bad" ]; then
  echo "symbols exported from $lib that are not demi_*:"
  printf '%s\n' "$bad"
  exit 1
fi
printf '%s\n' "$syms" | grep -q '^demi_init$' || { echo "demi_init is not exported"; exit 1; }
echo "ok: $(printf '%s\n' "$syms" | wc -l) symbols, all demi_*"
