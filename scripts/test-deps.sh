#!/usr/bin/env bash
# Installs what `make test` needs when it is missing (Debian, as root).
# A tool that cannot be had is an error: no suite is skipped.
set -euo pipefail

need_apt=()
command -v cc >/dev/null || need_apt+=(gcc)
command -v c++ >/dev/null || need_apt+=(g++)
command -v curl >/dev/null || need_apt+=(curl)
# tests/tls_cli.rs drives the TLS listener with openssl s_client (and the
# bench harness makes its certificates with it).
command -v openssl >/dev/null || need_apt+=(openssl)
# make install's test builds the C demo with $(pkg-config --cflags --libs warpcore)
# and checks the library with nm, readelf and ldd (binutils, libc-bin).
command -v pkg-config >/dev/null || need_apt+=(pkgconf)
command -v nm >/dev/null && command -v readelf >/dev/null || need_apt+=(binutils)
# libabigail's abidw and abidiff for make test-abidiff (scripts/abi.sh).
command -v abidw >/dev/null && command -v abidiff >/dev/null || need_apt+=(abigail-tools)
# The load generator of make bench-smoke.
command -v wrk >/dev/null || need_apt+=(wrk)
# Headless browser for the example-site test (tests/static_files.rs).
command -v chromium >/dev/null || need_apt+=(chromium)
# AddressSanitizer's runtime for the C ABI tests.
echo 'int main(void){return 0;}' | cc -fsanitize=address -x c - -o /tmp/warpcore-asan-probe 2>/dev/null \
  || need_apt+=(libasan8)
rm -f /tmp/warpcore-asan-probe

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test-deps: installing ${need_apt[*]}"
  if [ "$(id -u)" != 0 ]; then
    echo "test-deps: need root to install ${need_apt[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "test-deps: cargo is missing (Rust is expected on this machine)" >&2; exit 1; }
# make lint: rustfmt and clippy, rustup components when the toolchain lacks them.
for component in rustfmt clippy; do
  cmd=$([ "$component" = rustfmt ] && echo fmt || echo clippy)
  if ! cargo "$cmd" --version >/dev/null 2>&1; then
    command -v rustup >/dev/null || { echo "test-deps: cargo $cmd is missing and there is no rustup" >&2; exit 1; }
    echo "test-deps: adding the $component component"
    rustup component add "$component"
  fi
done
