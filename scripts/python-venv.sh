#!/usr/bin/env bash
# Creates .venv (when missing or incomplete) with what the Python binding's
# tests need: pytest, pytest-timeout, Flask, websockets, FastAPI, python-multipart, httpx,
# uvloop (bindings/python/requirements-test.txt).
# A tool that cannot be had is an error: no test is skipped for it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV=.venv
REQ=bindings/python/requirements-test.txt

command -v "$PYTHON" >/dev/null || { echo "python-venv: $PYTHON is missing" >&2; exit 1; }
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 8))' \
  || { echo "python-venv: $PYTHON is older than 3.8" >&2; exit 1; }
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
  # Debian splits venv/ensurepip into python3-venv.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
  "$PYTHON" -c 'import venv, ensurepip' || { echo "python-venv: $PYTHON has no venv module" >&2; exit 1; }
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "python-venv: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# Install only when something is missing, so a ready venv costs nothing offline.
if ! "$VENV/bin/python" -c 'import pytest, pytest_timeout, flask, websockets.sync.client, fastapi, multipart, httpx, uvloop' 2>/dev/null; then
  echo "python-venv: installing $(grep -v '^#' "$REQ" | xargs)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ"
fi
"$VENV/bin/python" -c 'import pytest, pytest_timeout, flask, websockets.sync.client, fastapi, multipart, httpx, uvloop' \
  || { echo "python-venv: a package of $REQ did not install" >&2; exit 1; }
