#!/bin/bash
# Downloads (on a Debian 12 development machine, where apt works) the Debian packages that the GPU
# machine lacks: ZeroMQ, cppzmq and Gloo with their libraries, PCRE2 and ICU (the tokenizer). They land in .deps/debs (ignored
# by git); pass `.deps` in the device call's carry list and scripts/gpu/env.sh unpacks them there.
set -euo pipefail
cd "$(dirname "$0")/../.."
PACKAGES=(libzmq5 libzmq3-dev cppzmq-dev libsodium23 libpgm-5.3-0 libnorm1 libgloo0 libgloo-dev
          libhiredis0.14 libhiredis-dev libibverbs1 libibverbs-dev catch2 libpcre2-8-0 libpcre2-dev
          libicu72 libicu-dev)
mkdir -p .deps/debs
cd .deps/debs
for p in "${PACKAGES[@]}"; do
  ls "${p}"_*.deb > /dev/null 2>&1 || apt-get download "$p" 2> >(grep -v "unsandboxed" >&2)
done
ls -1
