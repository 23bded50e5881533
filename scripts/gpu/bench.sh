#!/bin/bash
# The GPU benchmarks of docs/benchmarks.md, on the GPU machine (builds build-gpu if needed):
#   a  the MoE block at the Qwen3-30B-A3B shape (256 and 4096 tokens), ours and transformers'
#   b  a whole-model prefill and decode step of a generated qwen3-30b-a3b checkpoint on 1 GPU
#      and at EP=2 / EP=4 over NCCL (as many as the machine has)
#   c  serving: eep-bench --num-prompts 512 --random-input-len 256 --random-output-len 128 on
#      that checkpoint at EP=2 and EP=4
# Usage: scripts/gpu/bench.sh [a] [b] [c]   (default: all; EEP_BENCH_SIZES="4" limits b and c to
# those GPU counts). Output also in $OUT/bench-*.txt.
set -uo pipefail
# shellcheck source=scripts/gpu/env.sh
source "$(dirname "$0")/env.sh"
# shellcheck source=scripts/gpu/models.sh
source "$(dirname "$0")/models.sh"
cd "$EEP_ROOT" || exit 1
[ -x build-gpu/bin/bench_model_step ] || scripts/gpu/build.sh || exit 1
BIN=build-gpu/bin
OUTDIR=${OUT:-/tmp}
WHAT=${*:-a b c}
NUM_GPUS=$(nvidia-smi -L | wc -l)
nvidia-smi -L
need_model() { generated_model qwen3-30b-a3b || exit 1; }
for w in $WHAT; do
  case $w in
    a)
      { echo "== (a) MoE block"; "$BIN/bench_moe_layer" --tokens 256,4096
        python3 scripts/gpu/bench_moe_transformers.py --tokens 256,4096; } 2>&1 | tee "$OUTDIR/bench-a.txt" ;;
    b)
      need_model
      { for n in ${EEP_BENCH_SIZES:-1 2 4}; do
          [ "$n" -le "$NUM_GPUS" ] || { echo "(b) EP=$n skipped: $NUM_GPUS GPUs"; continue; }
          echo "== (b) model step, $n GPU(s)"; step_bench "$n"
        done; } 2>&1 | tee "$OUTDIR/bench-b.txt" ;;
    c)
      need_model
      { for n in ${EEP_BENCH_SIZES:-2 4}; do
          [ "$n" -le "$NUM_GPUS" ] || { echo "(c) EP=$n skipped: $NUM_GPUS GPUs"; continue; }
          echo "== (c) serving, EP=$n"
          scripts/gpu/serve_bench.sh qwen3-30b-a3b "$n" --num-prompts 512 --random-input-len 256 \
            --random-output-len 128 --result-json "$OUTDIR/bench-c-ep$n.json"
        done; } 2>&1 | tee "$OUTDIR/bench-c.txt" ;;
  esac
done
