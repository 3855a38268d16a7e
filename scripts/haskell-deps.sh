#!/usr/bin/env bash
# Installs what the Haskell binding needs when it is missing (Debian, as root):
# GHC and the libghc-*-dev packages it builds, tests and demonstrates with.
# There is no Hackage here: every Haskell library comes from Debian.
# A package that cannot be had is an error: nothing is skipped.
set -euo pipefail

packages=(
  ghc                          # ghc, hsc2hs, the Cabal library (Setup.hs)
  libghc-wai-dev               # the WAI handler
  libghc-http-types-dev
  libghc-http-date-dev         # Last-Modified / If-Modified-Since for ResponseFile
  libghc-case-insensitive-dev
  libghc-streaming-commons-dev # HostPreference, as Warp's
  libghc-network-dev
  libghc-hspec-dev             # tests
  libghc-http-client-dev
  libghc-async-dev
  libghc-cryptonite-dev        # SHA-256 of the streamed uploads in the tests
  libghc-scotty-dev            # the Scotty example and its test
  libghc-websockets-dev        # GET /ws of the demo; the WebSocket client of the tests
  libghc-wai-websockets-dev    # websocketsOr over responseRaw, unchanged
  libghc-warp-dev              # Warp itself: build/listen-warp, what the tests compare with
  libghc-vault-dev             # Warp's vault keys (pauseTimeout, getFileInfo)
  libghc-x509-dev              # clientCertificate's type, as Warp's
  libghc-time-manager-dev      # setManager's type, as Warp's
  libghc-http2-dev             # HTTP2Data's and PushPromise's field types, as Warp's
  libghc-wai-extra-dev         # the drop-in tests' middleware application (gzip, logging)
  libghc-wai-app-static-dev    # the drop-in tests' static file server
)

need=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done

if [ ${#need[@]} -gt 0 ]; then
  echo "haskell-deps: installing ${need[*]}"
  if [ "$(id -u)" != 0 ]; then
    echo "haskell-deps: need root to install ${need[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
for tool in ghc hsc2hs ghc-pkg; do
  command -v "$tool" >/dev/null || { echo "haskell-deps: $tool is missing after install" >&2; exit 1; }
done
