#!/usr/bin/env bash
# nginx in the foreground on 127.0.0.1:PORT (the harness owns its pid and session).
# Usage: benches/peers/nginx/run.sh PORT WORKERS WWW RUNDIR
set -euo pipefail
port=$1 workers=$2 www=$3 run=$4
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$run"
sed -e "s|@PORT@|$port|g" -e "s|@WORKERS@|$workers|g" \
    -e "s|@WWW@|$www|g" -e "s|@RUN@|$run|g" \
    "$here/nginx.conf.tmpl" > "$run/nginx.conf"
exec nginx -c "$run/nginx.conf" -p "$run" -e "$run/error.log"
