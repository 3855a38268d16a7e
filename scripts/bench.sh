#!/usr/bin/env bash
# scripts/bench.sh — the entry of the bench targets (benches/harness/bench.py does the work).
#   bash scripts/bench.sh bench   [ARGS]   make bench: micro + the demos (Python, Haskell when built), nginx for uploads,
#                                          h2o and nginx for static files,
#                                          tokio-tungstenite's echo for WebSockets
#   bash scripts/bench.sh compare [ARGS]   make bench-compare: the same + nginx, Warp, hyper, granian, gunicorn, bjoern
#   bash scripts/bench.sh scale   [ARGS]   make bench-scale: the C demo with 1, 2, 4, … workers
#   bash scripts/bench.sh smoke   [ARGS]   make bench-smoke: one short checked run of each (make test runs it)
# ARGS go to the harness (python3 benches/harness/bench.py --help), e.g.
#   make bench BENCH_ARGS='--rounds 5 --suites plain,pipe'
#   make bench BENCH_ARGS='--layout b --workers 8'          # bigger machines: nothing pinned
# Installs wrk (and, for make bench, nginx) from Debian when missing. Everything is bounded in time:
# the whole run by BENCH_TIMEOUT seconds (default: 40 min, smoke 8 min).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
mode=${1:?usage: scripts/bench.sh bench|compare|scale|smoke [ARGS]}
shift

if ! command -v wrk >/dev/null; then
  echo "bench: installing wrk"
  [ "$(id -u)" = 0 ] || { echo "bench: need root to install wrk (apt-get install wrk)" >&2; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi

# make bench measures its upload suite against nginx and its static suite
# against h2o and nginx: installed when missing (no service may start from the
# install: Debian's policy-rc.d says so meanwhile).
need=()
if [ "$mode" = bench ]; then
  for tool in nginx h2o; do command -v "$tool" >/dev/null || need+=("$tool"); done
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "bench: installing ${need[*]} (the upload and static suites' references)"
  [ "$(id -u)" = 0 ] || { echo "bench: need root to install ${need[*]} (apt-get install ${need[*]})" >&2; exit 1; }
  policy=/usr/sbin/policy-rc.d made_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
  [ -n "$made_policy" ] && rm -f "$policy"
fi

# make bench measures its ws suite against tokio-tungstenite's echo
# (benches/peers/ws-echo, crates.io): built when missing or stale.
if [ "$mode" = bench ]; then
  CARGO_TARGET_DIR="$ROOT/build/bench-peers/target" cargo build --quiet --release \
    --manifest-path benches/peers/Cargo.toml -p ws-echo
fi

case $mode in
  bench)   args=(); limit=${BENCH_TIMEOUT:-2400}; target="make bench" ;;
  compare) bash benches/peers/setup.sh
           args=(--compare); limit=${BENCH_TIMEOUT:-3600}; target="make bench-compare" ;;
  scale)   args=(--scale); limit=${BENCH_TIMEOUT:-1200}; target="make bench-scale" ;;
  # One round of 1 s (no warm-up), 300 idle connections, criterion's test
  # mode; the Python and Haskell demos must be there (the target builds them).
  smoke)   args=(--smoke --rounds 1 --mem-rounds 1 --duration 1 --warmup 0 --retries 0
                 --mem-conns 300 --ws-idle 200 --require c-demo,py-demo,hs-demo)
           limit=${BENCH_TIMEOUT:-480}; target="make bench-smoke" ;;
  *) echo "bench: unknown mode $mode" >&2; exit 2 ;;
esac
export BENCH_COMMAND="$target${*:+ BENCH_ARGS='$*'}"
# 10,000 idle connections need file descriptors in the probe and the servers.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# timeout sends SIGTERM: the harness then stops the server it started and exits.
exec timeout --kill-after=30 "$limit" python3 benches/harness/bench.py "${args[@]}" "$@"
