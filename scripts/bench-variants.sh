#!/usr/bin/env bash
# Same-run ratios for engine variants against the C demo, layout (a): server
# pinned to CPU 1 with one worker, wrk -t1 -c64 on CPU 0, rounds interleaved.
#   in-handler  build/demo
#   deferred    build/deferred (every answer from a thread pool after the handler returned)
#   access-log  build/demo --access-log FILE
# Usage: scripts/bench-variants.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
secs=${2:-5}
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 1; }
make -s all >/dev/null
log=$(mktemp /tmp/warpcore-access-XXXXXX.log)
trap 'rm -f "$log"' EXIT

run_one() { # name, command...
  local name=$1; shift
  local out; out=$(mktemp)
  taskset -c 1 "$@" --port 0 --workers 1 >"$out" 2>&1 &
  local pid=$!
  local port=""
  for _ in $(seq 50); do
    port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out")
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "$name did not start" >&2; kill "$pid"; exit 1; }
  taskset -c 0 wrk -t1 -c64 -d2s "http://127.0.0.1:$port/" >/dev/null
  local t0; t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  local rps; rps=$(taskset -c 0 wrk -t1 -c64 -d"${secs}s" --latency "http://127.0.0.1:$port/" \
    | awk '/Requests\/sec/ {print $2}')
  local t1; t1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  kill -TERM "$pid"; wait "$pid" || true
  rm -f "$out"
  local cpu; cpu=$(awk -v a="$t0" -v b="$t1" -v s="$secs" 'BEGIN{printf "%.2f", (b-a)/100/s}')
  local eff; eff=$(awk -v r="$rps" -v c="$cpu" 'BEGIN{ if (c>0) printf "%.0f", r/c; else print "n/a"}')
  echo "$name $rps $cpu $eff"
}

echo "variant req/s server-CPU(cores) req-per-server-CPU-s"
for r in $(seq "$rounds"); do
  run_one in-handler build/demo
  run_one deferred build/deferred --threads 2
  [ -n "${SKIP_ACCESS_LOG:-}" ] || run_one access-log build/demo --access-log "$log"
done
