#!/usr/bin/env bash
# scripts/bench-compare.sh — the C demo against its peers (nginx, Warp, hyper,
# may_minihttp), plaintext and 16-deep pipelined, server pinned to CPU 1 and
# wrk to CPU 0, 3 interleaved rounds (A B C A B C …), ratios per round.
#
#   make bench-compare                         # or: bash scripts/bench-compare.sh
#   bash scripts/bench-compare.sh --rounds 5 --suites plain-a   # more/other args go to tools/bench.py
#
# Needs the peers once per machine: bash ../shared/bench/setup-peers.sh
# Environment: WARPCORE_BENCH (the bench directory, default ../shared/bench),
# ONLY, SUITES, ROUNDS, OUT (default benches/results/<date_time>-compare).
# All traffic stays on 127.0.0.1; the harness starts every server in its own
# session and stops it by that session, never by name.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BENCH=${WARPCORE_BENCH:-$ROOT/../shared/bench}
ONLY=${ONLY:-nginx,warp,hyper,minihttp,warpcore}
SUITES=${SUITES:-plain-a,pipe-a}
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-$ROOT/benches/results/$(date +%Y-%m-%d_%H%M%S)-compare}

if [ ! -f "$BENCH/run-peers.sh" ]; then
  echo "bench-compare: no $BENCH/run-peers.sh (set WARPCORE_BENCH)" >&2
  exit 1
fi

# The release library and build/demo, exactly as `make` builds them.
make --no-print-directory all

# {PROJECT} in warpcore.conf is this checkout, whatever directory the harness runs from.
export WARPCORE_PROJECT="$ROOT"
mkdir -p "$OUT"
{
  echo "# bench-compare $(date -Iseconds)"
  echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (dirty)')"
  echo "command: bash $BENCH/run-peers.sh --servers-extra $BENCH/warpcore.conf --only $ONLY --suites $SUITES --rounds $ROUNDS --out $OUT $*"
} > "$OUT/command.txt"
bash "$BENCH/run-peers.sh" --servers-extra "$BENCH/warpcore.conf" \
  --only "$ONLY" --suites "$SUITES" --rounds "$ROUNDS" --out "$OUT" "$@"
echo "bench-compare: $OUT/summary.md"
