#!/usr/bin/env bash
# A Python WSGI peer in the foreground on 127.0.0.1:PORT, from the peers' venv.
# Usage: benches/peers/python/run.sh VENV granian|gunicorn PORT WORKERS
set -euo pipefail
venv=$1 kind=$2 port=$3 workers=$4
cd "$(dirname "$0")"
case $kind in
  granian)
    # WSGI interface, HTTP/1 only, one runtime thread per worker (its default).
    exec "$venv/bin/granian" --interface wsgi --http 1 --no-ws \
      --host 127.0.0.1 --port "$port" --workers "$workers" \
      --log-level warning hello_wsgi:app ;;
  gunicorn)
    # The sync worker answers one request at a time and every answer with
    # "Connection: close": each request is a new connection (not pipelined).
    exec "$venv/bin/gunicorn" -k sync -w "$workers" -b "127.0.0.1:$port" \
      --backlog 4096 --log-level warning hello_wsgi:app ;;
  *) echo "unknown python peer $kind" >&2; exit 2 ;;
esac
