#!/usr/bin/env bash
# `make install` and `make uninstall` as a C programmer uses them, into
# temporary directories (never the real /usr/local):
#   - PREFIX=<tmp>: exactly the expected files and links; the soname; the
#     exported symbols are exactly the header's functions, each with symbol
#     version of its release (WARPCORE_0.1, or the node of abi/libwarpcore.map
#     that names it; readelf --dyn-syms, objdump -T); installed copies
#     equal the build's; warpcore.pc's version and paths;
#   - examples/c/demo.c built with nothing but
#     `cc demo.c $(pkg-config --cflags --libs warpcore)`, run on 127.0.0.1
#     port 0 with the installed library, asked for /, stopped with SIGTERM
#     (exit 0); the same demo linked with the static archive and the
#     `pkg-config --static` libraries, run the same way;
#   - make uninstall leaves no file or link behind;
#   - DESTDIR with a PREFIX and with the default PREFIX (/usr/local): files
#     staged under DESTDIR, warpcore.pc naming the final paths, and uninstall.
# Every step is bounded in time; only processes this script started are
# stopped, by PID. Any failure fails the script.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
MAKE=${MAKE:-make}
CC=${CC:-cc}
libdir_build=$root/target/release

# shellcheck source=../lib/checks.sh
. "$root/tests/lib/checks.sh"
checks_begin install
require_tools "make test-deps installs it" "$CC" pkg-config nm readelf objdump curl timeout
[ -f "$libdir_build/libwarpcore.so" ] || { echo "install: $libdir_build/libwarpcore.so is missing (run make)" >&2; exit 1; }

version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
major=${version%%.*}
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "install: Cargo.toml's version '$version' is not MAJOR.MINOR.PATCH" >&2; exit 1; }

# make_in ARGS...: the repository's Makefile, quiet, bounded; never ldconfig.
make_in() { timeout --kill-after=5 300 "$MAKE" -s -C "$root" LDCONFIG=true "$@"; }

# files_under DIR: every file and symbolic link below DIR, relative, sorted.
files_under() { (cd "$1" && find . \( -type f -o -type l \) | sed 's|^\./||' | LC_ALL=C sort); }

expected_files() {
  LC_ALL=C sort <<EOF
include/warpcore.h
lib/libwarpcore.a
lib/libwarpcore.so
lib/libwarpcore.so.$major
lib/libwarpcore.so.$version
lib/pkgconfig/warpcore.pc
EOF
}

# The functions include/warpcore.h declares: warpcore_NAME( on a line that is
# neither a comment nor a typedef.
header_functions() {
  grep -v -e '^ *//' -e '^typedef' "$1" | grep -oE '\bwarpcore_[a-z0-9_]+\(' | tr -d '(' | LC_ALL=C sort -u
}

# serve NAME BINARY [ENV...]: runs BINARY --host 127.0.0.1 --port 0 --workers 2
# with ENV, waits for "listening on 127.0.0.1:PORT", GETs / (200, "Hello,
# World!"), sends SIGTERM and expects exit status 0 within 15 s.
serve() {
  local name=$1 binary=$2
  shift 2
  local out=$tmp/$name.out
  env "$@" "$binary" --host 127.0.0.1 --port 0 --workers 2 >"$out" 2>&1 &
  server_pid=$!
  local port= i
  for i in $(seq 100); do
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$out")
    [ -n "$port" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$port" ] || { cat "$out" >&2; fail "$name: no 'listening on 127.0.0.1:PORT' within 10 s"; }
  local body status
  body=$(curl -sS --max-time 5 -o - -w '\n%{http_code}' "http://127.0.0.1:$port/") || fail "$name: GET / failed"
  status=${body##*$'\n'}
  body=${body%$'\n'*}
  [ "$status" = 200 ] && [ "$body" = "Hello, World!" ] || fail "$name: GET / gave $status '$body'"
  ok "$name: GET / on 127.0.0.1:$port is 200 Hello, World!"
  stop_server "$name"
  [ "$server_rc" = 0 ] || { cat "$out" >&2; fail "$name: exit status $server_rc after SIGTERM"; }
  ok "$name: SIGTERM, exit status 0"
}

# --- make install PREFIX=<tmp> ------------------------------------------------
prefix=$tmp/prefix
make_in install PREFIX="$prefix"
[ "$(files_under "$prefix")" = "$(expected_files)" ] \
  || fail "installed files differ: $(diff <(expected_files) <(files_under "$prefix") | grep '^[<>]' | xargs)"
ok "make install PREFIX=$prefix: $(files_under "$prefix" | xargs)"

lib=$prefix/lib
[ -f "$lib/libwarpcore.so.$version" ] && [ ! -L "$lib/libwarpcore.so.$version" ] || fail "libwarpcore.so.$version is not a file"
[ "$(readlink "$lib/libwarpcore.so.$major")" = "libwarpcore.so.$version" ] || fail "libwarpcore.so.$major does not link to libwarpcore.so.$version"
[ "$(readlink "$lib/libwarpcore.so")" = "libwarpcore.so.$major" ] || fail "libwarpcore.so does not link to libwarpcore.so.$major"
ok "links: libwarpcore.so -> libwarpcore.so.$major -> libwarpcore.so.$version"

cmp -s "$lib/libwarpcore.so.$version" "$libdir_build/libwarpcore.so" || fail "installed library differs from target/release's"
cmp -s "$lib/libwarpcore.a" "$libdir_build/libwarpcore.a" || fail "installed archive differs from target/release's"
cmp -s "$prefix/include/warpcore.h" "$root/include/warpcore.h" || fail "installed header differs from include/warpcore.h"
ok "installed library, archive and header are the build's"

soname=$(readelf -d "$lib/libwarpcore.so.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libwarpcore.so.$major" ] || fail "soname is '$soname', not libwarpcore.so.$major"
ok "soname libwarpcore.so.$major"

exported=$(nm -D --defined-only "$lib/libwarpcore.so.$version" | awk 'NF == 3 { sub(/@.*/, "", $3); print $3 }' | LC_ALL=C sort -u)
strays=$(grep -v '^warpcore_' <<<"$exported" || true)
[ -z "$strays" ] || fail "exported symbols without the warpcore_ prefix: $(xargs <<<"$strays")"
declared=$(header_functions "$root/include/warpcore.h")
[ "$(wc -l <<<"$declared")" -ge 30 ] || fail "found only $(wc -l <<<"$declared") functions in the header"
[ "$exported" = "$declared" ] \
  || fail "exported symbols and header functions differ: $(diff <(echo "$declared") <(echo "$exported") | grep '^[<>]' | xargs)"
ok "nm -D: exactly the header's $(wc -l <<<"$exported") warpcore_* functions are exported"

# Symbol versions (abi/libwarpcore.map, build.rs): every defined dynamic
# symbol is a warpcore_ function with the default version of the map's node
# that names it exactly (a release's node after WARPCORE_0.1), else
# WARPCORE_0.1, and objdump -T agrees. (A linker may add a node's own ABS
# symbol: skipped.)
map_nodes=$(awk '/^[A-Z0-9_.]+ *\{/ { node = $1 } node != "" && /^ *warpcore_[a-z0-9_]+;/ { gsub(/[ ;]/, ""); print $0, node }' \
  "$root/abi/libwarpcore.map")
expected=$(while read -r f; do
  node=$(awk -v f="$f" '$1 == f { print $2 }' <<<"$map_nodes")
  echo "$f@@${node:-WARPCORE_0.1}"
done <<<"$declared" | LC_ALL=C sort -u)
dynsyms=$(readelf --dyn-syms -W "$lib/libwarpcore.so.$version" \
  | awk '$1 ~ /^[0-9]+:$/ && $7 != "UND" && !($7 == "ABS" && $8 ~ /^WARPCORE_[0-9.]+(@@.*)?$/) { print $5, $8 }')
strangers=$(grep -vE '^(GLOBAL|WEAK) warpcore_[a-z0-9_]+@@WARPCORE_[0-9.]+$' <<<"$dynsyms" || true)
[ -z "$strangers" ] || fail "readelf --dyn-syms: symbols without a WARPCORE_ version or not warpcore_*: $(xargs <<<"$strangers")"
[ "$(sed 's/^[A-Z]* //' <<<"$dynsyms" | LC_ALL=C sort -u)" = "$expected" ] \
  || fail "readelf --dyn-syms: symbol versions differ from abi/libwarpcore.map's nodes: $(diff <(echo "$expected") <(sed 's/^[A-Z]* //' <<<"$dynsyms" | LC_ALL=C sort -u) | grep '^[<>]' | xargs)"
objdump_versioned=$(objdump -T "$lib/libwarpcore.so.$version" | awk '$NF ~ /^warpcore_/ && $(NF-1) ~ /^WARPCORE_/ { print $NF "@@" $(NF-1) }' | LC_ALL=C sort -u)
[ "$objdump_versioned" = "$expected" ] || fail "objdump -T: the functions' versions are not abi/libwarpcore.map's"
# Into a variable first: with pipefail, grep -q leaving early would fail the
# pipeline through readelf's SIGPIPE whenever the match comes before the end.
versions=$(readelf -V -W "$lib/libwarpcore.so.$version")
grep -q 'Name: WARPCORE_0\.1$' <<<"$versions" || fail "readelf -V: no version definition WARPCORE_0.1"
ok "readelf --dyn-syms / objdump -T: all $(wc -l <<<"$dynsyms") exported symbols are warpcore_* with their release's version ($(awk '{print $2}' <<<"$map_nodes" | LC_ALL=C sort -u | xargs) by name, WARPCORE_0.1 for the rest)"

export PKG_CONFIG_PATH=$lib/pkgconfig
unset PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR
[ "$(pkg-config --modversion warpcore)" = "$version" ] || fail "pkg-config --modversion warpcore is not $version"
pkg-config --exists "warpcore >= $version" || fail "pkg-config --exists 'warpcore >= $version' fails"
[ "$(pkg-config --variable=libdir warpcore)" = "$lib" ] || fail "pkg-config libdir is not $lib"
[ "$(pkg-config --variable=includedir warpcore)" = "$prefix/include" ] || fail "pkg-config includedir is not $prefix/include"
ok "pkg-config: warpcore $version, libdir and includedir under the prefix"

# The demo, outside the tree, with nothing but cc and pkg-config.
work=$tmp/work
mkdir -p "$work"
cp "$root/examples/c/demo.c" "$work/demo.c"
(cd "$work" && timeout 120 "$CC" demo.c $(pkg-config --cflags --libs warpcore) -o demo) \
  || fail "cc demo.c \$(pkg-config --cflags --libs warpcore) failed"
needed=$(readelf -d "$work/demo" | sed -n 's/.*(NEEDED).*\[\(libwarpcore[^]]*\)\]/\1/p')
[ "$needed" = "libwarpcore.so.$major" ] || fail "the demo needs '$needed', not libwarpcore.so.$major"
resolved=$(LD_LIBRARY_PATH=$lib ldd "$work/demo" | sed -n "s/^[[:space:]]*libwarpcore\.so\.$major => \([^ ]*\).*/\1/p")
[ "$resolved" = "$lib/libwarpcore.so.$major" ] || fail "the demo loads libwarpcore from '$resolved', not the prefix"
ok "cc demo.c \$(pkg-config --cflags --libs warpcore): needs libwarpcore.so.$major, loads it from the prefix"
serve demo "$work/demo" LD_LIBRARY_PATH="$lib"

# The static archive, with the libraries pkg-config --static adds.
private=$(pkg-config --libs-only-l --static warpcore | sed 's/-lwarpcore\b//')
(cd "$work" && timeout 120 "$CC" demo.c $(pkg-config --cflags warpcore) "$lib/libwarpcore.a" $private -o demo-static) \
  || fail "linking demo.c with libwarpcore.a and '$private' failed"
grep -q 'NEEDED.*libwarpcore' <<<"$(readelf -d "$work/demo-static")" && fail "demo-static still needs libwarpcore.so"
ok "demo-static: libwarpcore.a and pkg-config --static's libraries ($(xargs <<<"$private"))"
serve demo-static "$work/demo-static"

make_in uninstall PREFIX="$prefix"
left=$(files_under "$prefix")
[ -z "$left" ] || fail "make uninstall left $(xargs <<<"$left")"
ok "make uninstall PREFIX=$prefix: no file or link left"

# --- DESTDIR -----------------------------------------------------------------
# stage DESTDIR FINAL_PREFIX [MAKE ARGS...]
stage() {
  local dest=$1 final=$2
  shift 2
  make_in install DESTDIR="$dest" "$@"
  [ "$(files_under "$dest$final")" = "$(expected_files)" ] || fail "DESTDIR=$dest $*: files differ under $dest$final"
  [ "$(files_under "$dest")" = "$(expected_files | sed "s|^|${final#/}/|")" ] || fail "DESTDIR=$dest $*: files outside $dest$final"
  local pc=$dest$final/lib/pkgconfig/warpcore.pc
  grep -qx "prefix=$final" "$pc" || fail "DESTDIR=$dest $*: warpcore.pc does not say prefix=$final"
  grep -q "$dest" "$pc" && fail "DESTDIR=$dest $*: warpcore.pc names the staging directory"
  [ "$(PKG_CONFIG_PATH=$dest$final/lib/pkgconfig pkg-config --variable=libdir warpcore)" = "$final/lib" ] \
    || fail "DESTDIR=$dest $*: pkg-config libdir is not $final/lib"
  ok "make install DESTDIR=$dest ${*:-(PREFIX unset)}: staged under $dest$final, warpcore.pc names $final"
  make_in uninstall DESTDIR="$dest" "$@"
  left=$(files_under "$dest")
  [ -z "$left" ] || fail "make uninstall DESTDIR=$dest $* left $(xargs <<<"$left")"
  ok "make uninstall DESTDIR=$dest ${*:-(PREFIX unset)}: no file or link left"
}
stage "$tmp/stage1" /opt/warpcore PREFIX=/opt/warpcore
stage "$tmp/stage2" /usr/local

echo "install: $checks checks passed"
