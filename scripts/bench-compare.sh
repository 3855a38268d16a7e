#!/usr/bin/env bash
# scripts/bench-compare.sh — `make bench-compare`: the demos against nginx, Warp,
# hyper, granian and gunicorn, interleaved rounds, ratios per round. Installs and
# builds the peers first when they are missing (benches/peers/setup.sh).
# Arguments go to benches/harness/bench.py, e.g. --rounds 5 --suites plain,pipe.
exec bash "$(dirname "$0")/bench.sh" compare "$@"
