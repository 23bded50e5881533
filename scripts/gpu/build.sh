#!/bin/bash
# Builds the CUDA backend, its tests and benchmarks into build-gpu (Release). On the GPU machine
# it uses the packages of .deps (scripts/gpu/env.sh); on a development machine with nvcc, the
# system's. Usage: scripts/gpu/build.sh [extra cmake arguments]
set -euo pipefail
# shellcheck source=scripts/gpu/env.sh
source "$(dirname "$0")/env.sh"
cd "$EEP_ROOT"
mkdir -p build-gpu
cmake -S . -B build-gpu -G Ninja -DEEP_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_EXE_LINKER_FLAGS=-s "$@" > build-gpu/configure.log || { cat build-gpu/configure.log; exit 1; }
# shellcheck disable=SC2046 # the bench_* targets, one word each
cmake --build build-gpu --target eep_gpu_tests eep_nccl_peer eep_ep_peer eep-worker \
  eep-coordinator eepctl eep-bench eep-mkmodel eep-generate \
  $(cd build-gpu && ninja -t targets all 2>/dev/null | grep -oE '^bench_[a-z_]+:' | tr -d ':' | sort -u)
