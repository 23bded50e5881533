#!/usr/bin/env bash
# Installs every Debian package that building and testing elastic-ep needs. Idempotent: when
# everything is there it only checks (a second or so). Needs root (or sudo) to install.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libzmq3-dev cppzmq-dev nlohmann-json3-dev libboost-dev libcli11-dev catch2 libgloo-dev
  curl python3 python3-zmq clang-format libpcre2-dev libicu-dev librsvg2-bin
  # sd_notify in the daemons; the install tests: systemd-analyze verify on the units (systemd),
  # the .deb from cpack (dpkg-dev's dpkg-shlibdeps, file), /bin/kill of ExecReload= (procps).
  libsystemd-dev systemd dpkg-dev file procps
)
# Node.js and npm run the openai npm package in the HTTP client tests. A machine that already has
# a node on PATH (e.g. a newer one than Debian's) keeps it.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  PACKAGES+=(nodejs npm)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; then
  # A fresh machine may have no package lists yet.
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
