#!/bin/bash
# The GPU tests, on the GPU machine: builds build-gpu (unless it is there already, or with
# --build), then runs every test of eep_gpu_tests (kernels against their CPU implementations,
# the grouped GEMM, the MoE exchange, the NCCL group, the model: golden logits, CPU greedy
# tokens, graphs against eager, EP over NCCL) and a CUDA fleet serving end to end. Results go to
# stdout and, when $OUT is set, to $OUT/gpu-tests.txt.
set -uo pipefail
# shellcheck source=scripts/gpu/env.sh
source "$(dirname "$0")/env.sh"
cd "$EEP_ROOT" || exit 1
if [ "${1:-}" = "--build" ] || [ ! -x build-gpu/bin/eep_gpu_tests ]; then
  [ "${1:-}" = "--build" ] && shift
  scripts/gpu/build.sh || exit 1
fi
LOG=${OUT:-/tmp}/gpu-tests.txt
{
  nvidia-smi -L
  echo "== eep_gpu_tests $*"
  build-gpu/bin/eep_gpu_tests --durations yes "$@"
  TESTS_RC=$?
  FLEET=$(nvidia-smi -L | wc -l)
  [ "$FLEET" -gt 2 ] && FLEET=2
  echo "== a CUDA fleet: $FLEET workers serving a generated tiny model"
  scripts/gpu/serve_bench.sh tiny "$FLEET" --num-prompts 64 --random-input-len 32 --random-output-len 32
  FLEET_RC=$?
  echo "== result: eep_gpu_tests rc=$TESTS_RC, fleet rc=$FLEET_RC"
  [ $TESTS_RC -eq 0 ] && [ $FLEET_RC -eq 0 ]
} 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
