#!/usr/bin/env bash
# Same-run ratios for engine variants against the C demo, layout (a): server
# pinned to CPU 1 with one worker, wrk -t1 -c64 on CPU 0, rounds interleaved.
#   in-handler      build/demo
#   deferred        build/deferred (every answer from a thread pool after the handler returned)
#   deferred-batch  the same with --sched-batch on (workers and pool under SCHED_BATCH)
#   access-log      build/demo --access-log FILE
# With WSGI=1, python -m warpcore.wsgi with the peers' WSGI hello instead:
#   wsgi-inline     --threads 0 (the application on the event loop)
#   wsgi-pool       --threads 8 (the application on a thread pool)
#   wsgi-pool-batch --threads 8 --sched-batch
# PIPELINE=N sends N requests per write (benches/harness/lua/pipeline.lua).
# Usage: [WSGI=1] [PIPELINE=16] scripts/bench-variants.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
secs=${2:-5}
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 1; }
make -s all >/dev/null
log=$(mktemp /tmp/warpcore-access-XXXXXX.log)
trap 'rm -f "$log"' EXIT
script=()
[ -z "${PIPELINE:-}" ] || script=(-s benches/harness/lua/pipeline.lua)
depth=()
[ -z "${PIPELINE:-}" ] || depth=(-- "$PIPELINE")
python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python

run_one() { # name, command... (with its own port 0 and one worker)
  local name=$1; shift
  local out; out=$(mktemp)
  taskset -c 1 "$@" >"$out" 2>&1 &
  local pid=$!
  local port=""
  for _ in $(seq 100); do
    port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out")
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "$name did not start" >&2; cat "$out" >&2; kill "$pid"; exit 1; }
  taskset -c 0 wrk -t1 -c64 -d2s "${script[@]}" "http://127.0.0.1:$port/" "${depth[@]}" >/dev/null
  local t0; t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  local rps; rps=$(taskset -c 0 wrk -t1 -c64 -d"${secs}s" --latency "${script[@]}" "http://127.0.0.1:$port/" "${depth[@]}" \
    | awk '/Requests\/sec/ {print $2}')
  local t1; t1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  kill -TERM "$pid"; wait "$pid" || true
  rm -f "$out"
  local cpu; cpu=$(awk -v a="$t0" -v b="$t1" -v s="$secs" 'BEGIN{printf "%.2f", (b-a)/100/s}')
  local eff; eff=$(awk -v r="$rps" -v c="$cpu" 'BEGIN{ if (c>0) printf "%.0f", r/c; else print "n/a"}')
  echo "$name $rps $cpu $eff"
}

wsgi() { # name, flags...
  local name=$1; shift
  PYTHONPATH=bindings/python:benches/peers/python run_one "$name" "$python" -m warpcore.wsgi hello_wsgi:app \
    --bind 127.0.0.1:0 --workers 1 --log-level warning "$@"
}

echo "variant req/s server-CPU(cores) req-per-server-CPU-s${PIPELINE:+ (pipelined $PIPELINE)}"
for r in $(seq "$rounds"); do
  if [ -n "${WSGI:-}" ]; then
    wsgi wsgi-inline --threads 0
    wsgi wsgi-pool --threads 8
    wsgi wsgi-pool-batch --threads 8 --sched-batch
    continue
  fi
  run_one in-handler build/demo --port 0 --workers 1
  run_one deferred build/deferred --threads 2 --port 0 --workers 1
  run_one deferred-batch build/deferred --threads 2 --sched-batch on --port 0 --workers 1
  [ -n "${SKIP_ACCESS_LOG:-}" ] || run_one access-log build/demo --access-log "$log" --port 0 --workers 1
done
