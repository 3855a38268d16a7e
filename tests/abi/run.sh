#!/usr/bin/env bash
# Builds and runs the C ABI tests: the header alone as C11 and as C++17, and
# every tests/abi/*.c program, compiled strictly against include/warpcore.h and
# target/release/libwarpcore.so and run under AddressSanitizer (with
# LeakSanitizer) and UndefinedBehaviorSanitizer; then every tests/abi/old/*.c
# program the same way but against the recorded release's header
# (tests/abi/old/warpcore-0.1.h, not include/): an older program run with the
# new library. Any failure fails the script.
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
libdir=$root/target/release
out=$root/build/abi
CC=${CC:-cc}
CXX=${CXX:-c++}

if [ ! -f "$libdir/libwarpcore.so" ]; then
  echo "abi: $libdir/libwarpcore.so is missing (run make)" >&2
  echo "abi: 0 passed, 1 failed"
  exit 1
fi
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
# The programs record the soname libwarpcore.so.MAJOR (build.rs); make links it.
if [ ! -e "$libdir/libwarpcore.so.${version%%.*}" ]; then
  echo "abi: $libdir/libwarpcore.so.${version%%.*} is missing (run make)" >&2
  echo "abi: 0 passed, 1 failed"
  exit 1
fi
mkdir -p "$out"

cflags=(-std=c11 -Wall -Wextra -Werror -pedantic -g -O1
        -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
        -I"$root/include" -DEXPECTED_VERSION="\"$version\"")
ldflags=(-L"$libdir" -lwarpcore -Wl,-rpath,"$libdir" -lpthread)
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0:strict_string_checks=1
export LSAN_OPTIONS=exitcode=23
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

passed=0
failed=0
# run NAME COMMAND...: runs it, keeps its output, shows it on failure.
run() {
  local name=$1
  shift
  local status=0
  "$@" >"$out/$name.log" 2>&1 || status=$?
  if [ "$status" -eq 0 ]; then
    passed=$((passed + 1))
    echo "abi: ok   $name"
  else
    failed=$((failed + 1))
    echo "abi: FAIL $name (exit $status): $*"
    sed 's/^/    /' "$out/$name.log"
  fi
}

run header-c11 "$CC" -std=c11 -Wall -Wextra -Werror -pedantic -fsyntax-only -x c "$root/include/warpcore.h"
run header-c++17 "$CXX" -std=c++17 -Wall -Wextra -Werror -pedantic -fsyntax-only -x c++ "$root/include/warpcore.h"

for src in "$root"/tests/abi/*.c; do
  name=$(basename "$src" .c)
  rm -f "$out/$name"
  run "build-$name" "$CC" "${cflags[@]}" "$src" -o "$out/$name" "${ldflags[@]}"
  if [ -x "$out/$name" ]; then
    run "$name" timeout --kill-after=5 120 "$out/$name"
  fi
done

# Programs of the recorded release, built with its header only.
old_cflags=("${cflags[@]/-I$root\/include/-I$root/tests/abi/old}")
for src in "$root"/tests/abi/old/*.c; do
  name=old-$(basename "$src" .c)
  rm -f "$out/$name"
  run "build-$name" "$CC" "${old_cflags[@]}" "$src" -o "$out/$name" "${ldflags[@]}"
  if [ -x "$out/$name" ]; then
    run "$name" timeout --kill-after=5 120 "$out/$name"
  fi
done

echo "abi: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
