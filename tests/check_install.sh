#!/bin/sh
# Installs the build into a temporary prefix and builds a program against it the way a
# user would: pkg-config for the shared library, and the static archive directly.
set -eu
build="$1"
# A sanitizer build needs its runtime in the program too.
sanflags="${2:-}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
libdir=$(ls -d "$tmp"/prefix/lib*/ | head -n1)
for f in include/demi/libos.h include/demi/types.h include/demi/wait.h include/demi/sga.h include/demi/cc.h \
         include/demi/ext.h; do
  [ -f "$tmp/prefix/$f" ] || { echo "not installed: $f"; exit 1; }
done
[ -f "$libdir/libdemikernel.a" ] || { echo "static library not installed"; exit 1; }
ls "$libdir"/libdemikernel.so* >/dev/null || { echo "shared library not installed"; exit 1; }
[ -f "$libdir/pkgconfig/demikernel.pc" ] || { echo "demikernel.pc not installed"; exit 1; }
if ls "$build"/../man/*.3 >/dev/null 2>&1 || ls "$(dirname "$0")"/../man/*.3 >/dev/null 2>&1; then
  [ -f "$tmp/prefix/share/man/man3/demi_push.3" ] || { echo "man pages not installed"; exit 1; }
fi
cat > "$tmp/t.c" <<'C'
#include <demi/libos.h>
#include <demi/sga.h>
#include <demi/wait.h>
#include <stdio.h>
int main(int argc, char *argv[])
{
    struct demi_args args = {.argc = argc, .argv = argv, .callback = NULL};
    int qd = -1;
    if (demi_init(&args) != 0 || demi_socket(&qd, AF_INET, SOCK_STREAM, 0) != 0 || demi_close(qd) != 0)
        return 1;
    demi_sgarray_t sga = demi_sgaalloc(64);
    if (sga.sga_numsegs != 1 || demi_sgafree(&sga) != 0)
        return 1;
    puts("installed library works");
    return 0;
}
C
export PKG_CONFIG_PATH="$libdir/pkgconfig"
# shellcheck disable=SC2046,SC2086
cc -std=c11 -Wall -Werror $sanflags -o "$tmp/t_shared" "$tmp/t.c" $(pkg-config --cflags --libs demikernel)
LD_LIBRARY_PATH="$libdir" DEMI_LIBOS=catnap "$tmp/t_shared"
# shellcheck disable=SC2046,SC2086
cc -std=c11 -Wall -Werror $sanflags -o "$tmp/t_static" "$tmp/t.c" $(pkg-config --cflags demikernel) "$libdir/libdemikernel.a" \
   $(pkg-config --libs yaml-0.1) -lpthread
DEMI_LIBOS=catnap "$tmp/t_static"
