#!/usr/bin/env bash
# The documentation, tested:
#   - README.md's quick starts (C, Python, Haskell) run as written. Each is
#     marked `<!-- quickstart LANG setup|file NAME|run -->` before its fenced
#     block: `setup` runs in the checkout, `file` is written to a fresh
#     directory, `run` runs there and its last line starts the server, which
#     must answer GET / with 200 "Hello, World!". What the test changes, and
#     why: the port 8080 is replaced by a free port (a server on 8080 may be
#     running); HOME is a temporary directory (so `make install
#     PREFIX=$HOME/.local` stays inside it; RUSTUP_HOME and CARGO_HOME keep
#     naming the real ones); Python runs in a fresh venv (so the
#     `pip install` does not touch a real environment), offline; Haskell's
#     setup line `make haskell-install` is not run (it registers the package in
#     the real user's GHC database): GHC_PACKAGE_PATH points at what `make
#     haskell` built in place, the same package, instead. The C file is also
#     compiled with -std=c11 -Wall -Wextra -Werror -pedantic.
#   - docs/ mentions every function, result code, timeout and log level of
#     include/warpcore.h, and every setting's default (docs/api.md's settings
#     table has a row for each warpcore_config_set_* and warpcore_config_add_*).
# Servers bind 127.0.0.1, every step is bounded in time, and only processes
# this script started are stopped, by PID. Any failure fails the script.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
CC=${CC:-cc}
PYTHON=${PYTHON:-python3}

# shellcheck source=../lib/checks.sh
. "$root/tests/lib/checks.sh"
checks_begin docs
require_tools "make test-deps / make haskell-deps install it" "$CC" pkg-config curl timeout "$PYTHON" ghc awk
[ -f "$root/target/release/libwarpcore.so" ] || { echo "docs: the library is not built (run make)" >&2; exit 1; }
inplace_db=$root/build/haskell/dist/package.conf.inplace
[ -d "$inplace_db" ] || { echo "docs: $inplace_db is missing (run make haskell)" >&2; exit 1; }


# --- README.md's quick starts -------------------------------------------------
blocks=$tmp/blocks
mkdir -p "$blocks"
# Each marked block to $blocks/LANG.KIND; a file block's name to $blocks/LANG.name.
awk -v out="$blocks" '
  /^<!-- quickstart [a-z]+ [a-z]+( [^ ]+)? -->$/ {
    lang = $3; kind = $4; want = 1
    target = out "/" lang "." kind
    if (kind == "file") { print $5 > (out "/" lang ".name"); close(out "/" lang ".name") }
    next
  }
  want && /^```/ { want = 0; inside = 1; printf "" > target; next }
  want && NF { print "docs: a quickstart marker is not followed by a fenced block: " $0 > "/dev/stderr"; exit 1 }
  inside && /^```$/ { inside = 0; close(target); next }
  inside { print > target }
' "$root/README.md"

rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_home=${CARGO_HOME:-$HOME/.cargo}

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# quickstart LANG START_SECONDS [ENV...]: runs one language's quick start.
quickstart() {
  local lang=$1 start_seconds=$2
  shift 2
  local kind
  for kind in setup file name run; do
    [ -s "$blocks/$lang.$kind" ] || fail "README.md has no '<!-- quickstart $lang ${kind/name/file NAME} -->' block"
  done
  local name work port
  name=$(cat "$blocks/$lang.name")
  work=$tmp/$lang
  mkdir -p "$work" "$tmp/home"
  grep -q 8080 "$blocks/$lang.file" || fail "$lang: $name does not listen on port 8080 as the README says"
  port=$(free_port)
  sed "s/8080/$port/g" "$blocks/$lang.file" >"$work/$name"

  # env options (-u NAME) first, then assignments. Cargo (through rustup) keeps
  # finding its toolchain when HOME moves.
  local env=("$@" HOME="$tmp/home" RUSTUP_HOME="$rustup_home" CARGO_HOME="$cargo_home")
  if [ "$lang" != haskell ]; then
    env "${env[@]}" timeout --kill-after=5 600 bash -euo pipefail -c "cd '$root'; $(cat "$blocks/$lang.setup")" \
      >"$tmp/$lang.setup.log" 2>&1 || { cat "$tmp/$lang.setup.log" >&2; fail "$lang: the setup block failed"; }
    ok "$lang: setup: $(xargs <"$blocks/$lang.setup")"
  fi
  # The run block in one shell: every line but the last, then the last (the
  # server) with exec, so that the PID is the server's own and SIGTERM reaches it.
  local prepare serve
  prepare=$(sed -e '$d' "$blocks/$lang.run")
  serve=$(tail -n 1 "$blocks/$lang.run")
  [ -n "$serve" ] || fail "$lang: the run block is empty"
  local out=$tmp/$lang.server.log
  env "${env[@]}" bash -euo pipefail -c "cd '$work'
$prepare
exec $serve" >"$out" 2>&1 &
  server_pid=$!
  local answer= i deadline=$((SECONDS + start_seconds))
  while [ "$SECONDS" -lt "$deadline" ]; do
    kill -0 "$server_pid" 2>/dev/null || break
    answer=$(curl -s --max-time 2 -w '|%{http_code}' "http://127.0.0.1:$port/" 2>/dev/null) && break
    answer=
    sleep 0.2
  done
  if [ "$answer" != $'Hello, World!\n|200' ]; then
    cat "$out" >&2
    fail "$lang: '$serve' did not answer GET / on 127.0.0.1:$port with 200 'Hello, World!' within $start_seconds s (got '$answer')"
  fi
  ok "$lang: $(printf '%s\n%s\n' "$prepare" "$serve" | sed '/^$/d' | paste -sd';' | sed 's/;/; /g'): GET / on 127.0.0.1:$port is 200 Hello, World!"
  stop_server "$lang: the server"
}

# C: the file must also compile cleanly under the strict flags the tree uses.
grep -q '^make install PREFIX=\$HOME/.local$' "$blocks/c.setup" || fail "c: the setup block is not 'make install PREFIX=\$HOME/.local'"
quickstart c 120 LDCONFIG=true
"$CC" -std=c11 -Wall -Wextra -Werror -pedantic -fsyntax-only -I"$root/include" "$tmp/c/$(cat "$blocks/c.name")" \
  || fail "c: $(cat "$blocks/c.name") does not compile with -std=c11 -Wall -Wextra -Werror -pedantic"
ok "c: $(cat "$blocks/c.name") compiles with -std=c11 -Wall -Wextra -Werror -pedantic"
make -s -C "$root" uninstall PREFIX="$tmp/home/.local" LDCONFIG=true

# Python: a fresh venv (without the checkout's package on the path), offline.
timeout 120 "$PYTHON" -m venv "$tmp/venv" || fail "python: cannot create a venv"
quickstart python 30 -u PYTHONPATH -u WARPCORE_LIBRARY PATH="$tmp/venv/bin:$PATH" VIRTUAL_ENV="$tmp/venv" \
  PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
(cd "$tmp" && env -u PYTHONPATH -u WARPCORE_LIBRARY "$tmp/venv/bin/python" -c 'import warpcore, sys; sys.exit(not warpcore.LIBRARY_PATH.startswith(sys.prefix))') \
  || fail "python: the quick start did not use the library pip installed into the venv"
ok "python: the venv's warpcore loads the library pip installed into it"

# Haskell: the package make haskell built, in place, over the global database.
[ "$(cat "$blocks/haskell.setup")" = "make haskell-install" ] || fail "haskell: the setup block is not 'make haskell-install'"
global_db=$(ghc --print-global-package-db)
quickstart haskell 600 GHC_PACKAGE_PATH="$inplace_db:$global_db"

# --- docs/ covers the header --------------------------------------------------
header=$root/include/warpcore.h
[ -d "$root/docs" ] || fail "docs/ is missing"
docs_text=$(cat "$root"/docs/*.md)
code=$(grep -v -e '^ *//' "$header")
names=$( (grep -v '^typedef' <<<"$code" | grep -oE '\bwarpcore_[a-z0-9_]+\(' | tr -d '('
          grep -oE '\bWARPCORE_(RESULT|TIMEOUT|LOG_LEVEL)_[A-Z0-9_]+\b' <<<"$code"
          grep -oE '^#define WARPCORE_[A-Z0-9_]+' "$header" | sed 's/^#define //' | grep -vx WARPCORE_H) | LC_ALL=C sort -u)
[ "$(grep -c '^warpcore_' <<<"$names")" -ge 30 ] && [ "$(grep -c '^WARPCORE_RESULT_' <<<"$names")" -ge 10 ] \
  || fail "could not read the header's names"
missing=()
while read -r n; do
  grep -qE "(^|[^A-Za-z0-9_])$n([^A-Za-z0-9_]|$)" <<<"$docs_text" || missing+=("$n")
done <<<"$names"
[ ${#missing[@]} -eq 0 ] || fail "docs/ never mentions ${missing[*]}"
ok "docs/ mentions all $(wc -l <<<"$names") functions, result codes, timeouts, log levels and macros of warpcore.h"

# The settings table of docs/api.md: a row (| `warpcore_config_...` | default | ...)
# for every setter, with a default filled in.
setters=$(grep -oE '\bwarpcore_config_(set|add)_[a-z0-9_]+\b' <<<"$code" | LC_ALL=C sort -u)
missing=()
while read -r n; do
  grep -qE "^\| \`$n\`[^|]*\| *[^ |][^|]*\|" "$root/docs/api.md" || missing+=("$n")
done <<<"$setters"
[ ${#missing[@]} -eq 0 ] || fail "docs/api.md's settings table has no row with a default for ${missing[*]}"
ok "docs/api.md's settings table gives a default for all $(wc -l <<<"$setters") setters"

echo "docs: $checks checks passed"
