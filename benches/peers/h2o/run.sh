#!/usr/bin/env bash
# h2o in the foreground on 127.0.0.1:PORT (the harness owns its pid and session).
# Usage: benches/peers/h2o/run.sh PORT WORKERS WWW RUNDIR
set -euo pipefail
port=$1 workers=$2 www=$3 run=$4
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$run"
printf 'Hello, World!' > "$run/hello.txt"
sed -e "s|@PORT@|$port|g" -e "s|@WORKERS@|$workers|g" \
    -e "s|@WWW@|$www|g" -e "s|@RUN@|$run|g" \
    "$here/h2o.conf.tmpl" > "$run/h2o.conf"
exec h2o -c "$run/h2o.conf"
