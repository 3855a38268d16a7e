#!/usr/bin/env bash
# nginx over HTTPS in the foreground on 127.0.0.1:PORT, for the TLS suites:
# the harness's certificate (ECDSA P-256), TLS 1.3 with the cipher and curve
# the C demo negotiates with wrk (TLS_AES_256_GCM_SHA384, X25519: rustls takes
# the client's order, and wrk's OpenSSL puts those first), session tickets on
# (wrk never resumes, so every new connection is a full handshake for both),
# kernel TLS (OpenSSL's Options KTLS, sendfile through it) when KTLS is on.
# Usage: benches/peers/nginx/run-tls.sh PORT WORKERS WWW RUNDIR CERT KEY on|off
set -euo pipefail
port=$1 workers=$2 www=$3 run=$4 cert=$5 key=$6 ktls=$7
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$run"
if [ "$ktls" = on ]; then options="Options KTLS"; else options="Options -KTLS"; fi
sed -e "s|@PORT@|$port|g" -e "s|@WORKERS@|$workers|g" -e "s|@WWW@|$www|g" -e "s|@RUN@|$run|g" \
    -e "s|@CERT@|$cert|g" -e "s|@KEY@|$key|g" -e "s|@KTLS@|$options|g" \
    "$here/nginx-tls.conf.tmpl" > "$run/nginx.conf"
exec nginx -c "$run/nginx.conf" -p "$run" -e "$run/error.log"
