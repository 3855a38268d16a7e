#!/usr/bin/env bash
# The library's ABI, recorded and compared with libabigail (Debian's
# abigail-tools):
#   scripts/abi.sh check    abidiff of the built library's ABI against the
#                           recorded release's, abi/libwarpcore.so.0.abi: an
#                           incompatible change (a function removed or changed,
#                           a public struct shrunk, reordered or retyped, an
#                           enum value renumbered, a symbol version changed)
#                           fails with abidiff's report; added functions pass
#                           (and are listed), and so do fields added at the end
#                           of the structs allowed to grow (abi/libwarpcore.so.0.suppr).
#                           `make test-abidiff`, in `make test`.
#   scripts/abi.sh record   rewrites abi/libwarpcore.so.0.abi from the built
#                           library: only when a release is made (the version
#                           bumped), after `check` has accepted the changes.
#
# What is compared. abidw reads types from DWARF, and it does not understand
# the library's own (Rust's: "LANG_UNKNOWN", and the release profile keeps
# line tables only), so the ABI is taken as a C compiler sees it: an image of
# the library, build/abi/libwarpcore.so.0, is compiled with -g from
# include/warpcore.h (every declared function given a body that traps), with
# the library's soname and version script. Its exported symbols and their
# versions are first checked to be exactly the built library's
# (target/release/libwarpcore.so); tests/header.rs keeps the header equal to
# what cbindgen makes of src/ffi/. So the image's ABI is the library's: its
# symbols, their versions, and the C layout of every type of the header
# (enums included, though no signature names them).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
CC=${CC:-cc}
recorded=$root/abi/libwarpcore.so.0.abi
# What abidiff must not count as a change: structs that may grow at the end.
suppr=$root/abi/libwarpcore.so.0.suppr
lib=$root/target/release/libwarpcore.so
out=$root/build/abi-image
mode=${1:-check}

for tool in "$CC" abidw abidiff readelf awk; do
  command -v "$tool" >/dev/null || { echo "abi: $tool is missing (make test-deps installs it)" >&2; exit 1; }
done
[ -f "$lib" ] || { echo "abi: $lib is missing (run make)" >&2; exit 1; }
mkdir -p "$out"

# The header with a trapping body for each function declared after
# `extern "C" {` (cbindgen ends each declaration with `);` on its last line).
awk '
  /^extern "C" \{/ { functions = 1 }
  functions && !/^ *\/\// && /\);$/ { sub(/;$/, " { __builtin_trap(); }") }
  { print }
' "$root/include/warpcore.h" >"$out/image.c"
# Relative paths, so the record names no checkout; every type of the header
# (the enums are used by no signature: functions take their uint32_t) is kept.
(cd "$out" && "$CC" -std=c11 -g -O0 -fno-eliminate-unused-debug-types -fPIC -shared -w -I"$root/include" \
  image.c -o libwarpcore.so.0 -Wl,-soname,libwarpcore.so.0 -Wl,--version-script="$root/abi/libwarpcore.map")

# defined dynamic symbols with their versions, sorted (name@@VERSION)
exports() {
  readelf --dyn-syms -W "$1" | awk '$1 ~ /^[0-9]+:$/ && $7 != "UND" && $7 != "ABS" { print $8 }' | LC_ALL=C sort -u
}
if [ "$(exports "$lib")" != "$(exports "$out/libwarpcore.so.0")" ]; then
  echo "abi: the library's exported symbols differ from its header's functions (< library, > header):" >&2
  diff <(exports "$lib") <(exports "$out/libwarpcore.so.0") | grep '^[<>]' >&2
  exit 1
fi
abidw --no-corpus-path --no-comp-dir-path --no-show-locs --load-all-types "$out/libwarpcore.so.0" >"$out/libwarpcore.so.0.abi"

case $mode in
  record)
    cp "$out/libwarpcore.so.0.abi" "$recorded"
    echo "abi: recorded $(grep -c '<elf-symbol ' "$recorded") functions in ${recorded#"$root"/}"
    ;;
  check)
    [ -f "$recorded" ] || { echo "abi: ${recorded#"$root"/} is missing" >&2; exit 1; }
    status=0
    abidiff --non-reachable-types --suppressions "$suppr" "$recorded" "$out/libwarpcore.so.0.abi" >"$out/abidiff.txt" 2>&1 || status=$?
    # abidiff's status is a bit set: 1 error, 2 usage, 4 a change, 8 an
    # incompatible change. A change is accepted when it is only additions,
    # which is what abidiff finds once told not to show them.
    if [ $((status & 3)) -ne 0 ]; then
      cat "$out/abidiff.txt" >&2
      echo "abi: abidiff failed (status $status)" >&2
      exit 1
    fi
    if [ "$status" -ne 0 ]; then
      rest=0
      abidiff --non-reachable-types --suppressions "$suppr" --no-added-syms "$recorded" "$out/libwarpcore.so.0.abi" >"$out/abidiff-changes.txt" 2>&1 || rest=$?
      # --no-added-syms leaves types the header added (an enum of event bits,
      # which no signature names) in the report: additions as well, accepted
      # when nothing was removed or changed.
      if [ "$rest" -ne 0 ] && [ $((rest & 8)) -eq 0 ] \
        && grep -q '^Functions changes summary: 0 Removed, 0 Changed' "$out/abidiff-changes.txt" \
        && grep -q '^Variables changes summary: 0 Removed, 0 Changed' "$out/abidiff-changes.txt" \
        && grep -q '^Unreachable types summary: 0 removed, 0 changed' "$out/abidiff-changes.txt" \
        && ! grep -q "^  \[[CD]\]" "$out/abidiff-changes.txt"; then
        rest=0
      fi
      if [ "$rest" -ne 0 ]; then
        cat "$out/abidiff.txt"
        echo "abi: FAIL: the ABI differs incompatibly from ${recorded#"$root"/} (abidiff status $status)" >&2
        exit 1
      fi
      cat "$out/abidiff.txt"
      echo "abi: ok: only additions to ${recorded#"$root"/} (record them when the version is bumped)"
      exit 0
    fi
    echo "abi: ok: the ABI is ${recorded#"$root"/}'s ($(grep -c '<elf-symbol ' "$recorded") functions)"
    ;;
  *)
    echo "usage: scripts/abi.sh [check|record]" >&2
    exit 2
    ;;
esac
