#!/bin/sh
# Each public header must compile on its own, as C99 and as C++, with no warnings.
set -eu
inc="$1"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for h in "$inc"/demi/*.h; do
  name=demi/$(basename "$h")
  printf '#include <%s>\nint main(void) { return 0; }\n' "$name" > "$tmp/t.c"
  ${CC:-cc} -std=c99 -Wall -Wextra -Werror -I"$inc" -c "$tmp/t.c" -o "$tmp/t.o" || { echo "FAIL (C99): $name"; exit 1; }
  cp "$tmp/t.c" "$tmp/t.cc"
  ${CXX:-c++} -std=c++11 -Wall -Wextra -Werror -I"$inc" -c "$tmp/t.cc" -o "$tmp/t.o" || { echo "FAIL (C++): $name"; exit 1; }
  echo "ok: $name"
done
