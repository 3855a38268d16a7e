#!/usr/bin/env bash
# A Python WSGI peer in the foreground on 127.0.0.1:PORT, from the peers' venv.
# Usage: benches/peers/python/run.sh VENV[/bin/PROGRAM] KIND PORT WORKERS
#   KIND: granian | gunicorn | bjoern | gunicorn-flask (peers), or
#         warpcore-wsgi | warpcore-flask (the checkout's warpcore.wsgi with the
#         same apps, so both sides run the same interpreter and packages);
#         ASGI: uvicorn | uvicorn-fastapi | granian-asgi | granian-fastapi (peers),
#         warpcore-asgi | warpcore-fastapi (the checkout's warpcore.asgi) with
#         hello_asgi.py or fastapi_hello.py (GET / plaintext, GET /json JSON)
set -euo pipefail
venv=$1 kind=$2 port=$3 workers=$4
# VENV/bin/PROGRAM names the venv that holds PROGRAM: the harness leaves a
# server out while a path in its command is missing (Flask not installed yet).
case $venv in */bin/*) venv=${venv%/bin/*} ;; esac
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
  bjoern)
    # Single-threaded libev loop; WORKERS > 1 forks processes sharing the port.
    exec "$venv/bin/python" run_bjoern.py "$port" "$workers" ;;
  gunicorn-flask)
    # The Flask hello of bindings/python/bench on gunicorn's sync worker.
    export PYTHONPATH=$(cd ../../../bindings/python/bench && pwd)
    exec "$venv/bin/gunicorn" -k sync -w "$workers" -b "127.0.0.1:$port" \
      --backlog 4096 --log-level warning flask_hello:app ;;
  warpcore-wsgi|warpcore-flask|warpcore-wsgi-pool)
    # The application runs on the event-loop thread (--threads 0): no hand-off,
    # like bjoern and gunicorn's sync worker; warpcore-wsgi-pool runs it on a
    # pool of 4 threads (the deferred path), for the pair py-wsgi-pool ÷ py-wsgi.
    root=$(cd ../../.. && pwd)
    threads=0
    if [ "$kind" = warpcore-wsgi-pool ]; then threads=4; fi
    if [ "$kind" = warpcore-flask ]; then app=flask_hello:app path=$root/bindings/python/bench; else app=hello_wsgi:app path=$PWD; fi
    export PYTHONPATH=$root/bindings/python:$path
    exec "$venv/bin/python" -m warpcore.wsgi "$app" --bind "127.0.0.1:$port" \
      --threads "$threads" --processes "$workers" ;;
  uvicorn|uvicorn-fastapi)
    # uvloop and httptools (uvicorn[standard]), no access log; WORKERS processes.
    if [ "$kind" = uvicorn ]; then app=hello_asgi:app; else app=fastapi_hello:app; fi
    exec "$venv/bin/uvicorn" "$app" --host 127.0.0.1 --port "$port" --workers "$workers" \
      --loop uvloop --http httptools --no-access-log --log-level warning ;;
  granian-asgi|granian-fastapi)
    if [ "$kind" = granian-asgi ]; then app=hello_asgi:app; else app=fastapi_hello:app; fi
    exec "$venv/bin/granian" --interface asgi --http 1 --no-ws \
      --host 127.0.0.1 --port "$port" --workers "$workers" \
      --log-level warning "$app" ;;
  warpcore-asgi|warpcore-fastapi)
    # One asyncio loop (uvloop, from the venv) and one engine loop per process,
    # WORKERS processes on one port; no access log, like the peers.
    if [ "$kind" = warpcore-asgi ]; then app=hello_asgi:app; else app=fastapi_hello:app; fi
    root=$(cd ../../.. && pwd)
    export PYTHONPATH=$root/bindings/python:$PWD
    exec "$venv/bin/python" -m warpcore.asgi "$app" --host 127.0.0.1 --port "$port" \
      --workers "$workers" --no-access-log --log-level warning ;;
  *) echo "unknown python peer $kind" >&2; exit 2 ;;
esac
