#!/bin/sh
# Runs the socket battery natively and under the preload library on catnap, and fails on any difference.
# usage: run_diff.sh BIN PRELOAD_LIB [BATTERY-ARGS...]   (e.g. --peer native)
# Outputs are kept in ./shim_diff.<mode>/out.native and out.shim. Exit 77 (skip) without the library.
set -u

if [ $# -lt 2 ]; then
    echo "usage: $0 BIN PRELOAD_LIB [BATTERY-ARGS...]" >&2
    exit 2
fi
bin=$1
lib=$2
shift 2

if [ ! -x "$bin" ]; then
    echo "run_diff: battery binary $bin not found" >&2
    exit 2
fi
if [ ! -e "$lib" ]; then
    echo "run_diff: SKIP: preload library $lib does not exist (build the demikernel_preload target)"
    exit 77
fi

mode=loopback
case " $* " in
*" --peer native "*) mode=native_peer ;;
esac
dir=$(pwd)/shim_diff.$mode
mkdir -p "$dir"
native=$dir/out.native
shim=$dir/out.shim

# A sanitizer build of the library needs its runtime first in the preload list.
preload=$lib
for rt in $(ldd "$lib" 2>/dev/null | awk '/lib(asan|tsan|ubsan)\.so/ { print $3 }'); do
    preload="$rt $preload"
done

# Each run is bounded; the battery bounds each scenario and each step itself.
env -u LD_PRELOAD timeout -k 5 50 "$bin" "$@" >"$native" 2>"$dir/err.native"
rc_native=$?
env LD_PRELOAD="$preload" DEMI_LIBOS=catnap ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0" \
    timeout -k 5 60 "$bin" "$@" >"$shim" 2>"$dir/err.shim"
rc_shim=$?

status=0
if [ $rc_native -ne 0 ]; then
    echo "run_diff: the native run itself failed (exit $rc_native): the battery is broken, not the shim"
    tail -n 20 "$dir/err.native"
    status=1
fi
if [ $rc_shim -ne 0 ]; then
    echo "run_diff: the run under the preload exited $rc_shim (124 = killed by the overall timeout)"
    tail -n 20 "$dir/err.shim"
    status=1
fi
if ! diff -u --label "native ($mode)" --label "shim on catnap ($mode)" "$native" "$shim"; then
    echo "run_diff: $(diff "$native" "$shim" | grep -c '^<') native line(s) differ under the shim; outputs in $dir"
    status=1
fi
if [ $status -eq 0 ]; then
    echo "run_diff: identical ($(wc -l <"$native") lines, mode $mode)"
fi
exit $status
