#!/usr/bin/env bash
# benches/peers/setup.sh — installs and builds the peers of `make bench-compare`
# when they are missing or stale; does nothing when all are ready.
#   Debian:    nginx, h2o; ghc + libghc-warp-dev  → build/bench-peers/warp-hello
#   crates.io: hyper (benches/peers, its own workspace) → build/bench-peers/target/release/hyper-hello
#   PyPI:      granian, gunicorn, bjoern, flask, uvicorn[standard], fastapi
#              (python/requirements.txt) → build/bench-peers/venv
#              (bjoern compiles against Debian's libev-dev)
# Needs root for apt-get (as `make test` does). A peer that cannot be had is an error.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT=$ROOT/build/bench-peers
mkdir -p "$OUT"

apt_packages=(nginx h2o ghc libghc-warp-dev libev-dev)
need=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "bench peers: installing ${need[*]}"
  [ "$(id -u)" = 0 ] || { echo "bench peers: need root to install ${need[*]}" >&2; exit 1; }
  # No service may start from the install (nginx would take port 80): Debian's
  # policy-rc.d says so, for the duration of the install only.
  policy=/usr/sbin/policy-rc.d
  made_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
  [ -n "$made_policy" ] && rm -f "$policy"
fi
for tool in nginx h2o ghc; do
  command -v "$tool" >/dev/null || { echo "bench peers: $tool is missing after install" >&2; exit 1; }
done

# Warp hello (Debian's GHC and warp; no Hackage).
warp_src=benches/peers/warp-hello/Main.hs
if [ ! -x "$OUT/warp-hello" ] || [ "$warp_src" -nt "$OUT/warp-hello" ]; then
  echo "bench peers: building warp-hello"
  ghc -v0 -O2 -threaded -rtsopts -outputdir "$OUT/warp-obj" -o "$OUT/warp-hello" "$warp_src"
fi

# hyper hello (crates.io), cargo decides whether anything changed.
CARGO_TARGET_DIR="$OUT/target" cargo build --quiet --release --manifest-path benches/peers/Cargo.toml

# The Python peers (PyPI), in their own venv: the test venv stays as it is.
venv=$OUT/venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! [ -x "$venv/bin/granian" ] || ! [ -x "$venv/bin/gunicorn" ] || ! [ -x "$venv/bin/uvicorn" ] \
   || ! "$venv/bin/python" -c "import bjoern, flask, fastapi, uvloop, httptools" 2>/dev/null; then
  echo "bench peers: installing granian, gunicorn, bjoern, flask, uvicorn and fastapi into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r benches/peers/python/requirements.txt
fi
for f in "$OUT/warp-hello" "$OUT/target/release/hyper-hello" "$venv/bin/granian" "$venv/bin/gunicorn" "$venv/bin/uvicorn"; do
  [ -x "$f" ] || { echo "bench peers: $f is missing after setup" >&2; exit 1; }
done
"$venv/bin/python" -c "import bjoern, flask, fastapi, uvloop, httptools" \
  || { echo "bench peers: bjoern, flask, fastapi, uvloop or httptools is missing from $venv" >&2; exit 1; }
