#!/usr/bin/env bash
# User-space instructions per request of a C example server, from callgrind:
# two runs with N and 2N requests, so start-up and shutdown cancel out.
#   scripts/callgrind.sh [SERVER] [N] [PIPELINE] [extra server flags...]
#   scripts/callgrind.sh build/demo 20000 1
#   scripts/callgrind.sh build/demo 32000 16
#   scripts/callgrind.sh build/deferred 20000 1 --threads 2
#   CALLGRIND_PATH=/static/1k.bin scripts/callgrind.sh build/demo 20000 1 --static /static=build/bench/www
# CALLGRIND_PATH is the path requested (default /).
# Leaves the profile of the larger run in /tmp/callgrind.<server>.<pipeline>.out.
set -euo pipefail
cd "$(dirname "$0")/.."
server=${1:-build/demo}; n=${2:-20000}; depth=${3:-1}; shift $(( $# < 3 ? $# : 3 )) || true
command -v valgrind >/dev/null || { echo "valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
extra=("$@")
run() { # requests, outfile -> total Ir
  local out; out=$(mktemp)
  valgrind --tool=callgrind --callgrind-out-file="$2" "$server" --port 0 --workers 1 "${extra[@]}" >"$out" 2>/dev/null &
  local pid=$! port=""
  for _ in $(seq 300); do
    port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out")
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "$server did not start" >&2; kill "$pid"; exit 1; }
  python3 scripts/callgrind-load.py "$port" "$1" --pipeline "$depth" --path "${CALLGRIND_PATH:-/}"
  kill -TERM "$pid"; wait "$pid" || true
  rm -f "$out"
  sed -n 's/^summary: //p;s/^totals: //p' "$2" | head -1
}
name=$(basename "$server")
small=$(run "$n" /tmp/callgrind.$name.$depth.small)
large=$(run $((2 * n)) /tmp/callgrind.$name.$depth.out)
rm -f /tmp/callgrind.$name.$depth.small
echo "$name depth=$depth: $(( (large - small) / n )) instructions per request ($small for $n, $large for $((2 * n)))"
