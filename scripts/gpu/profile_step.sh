#!/bin/bash
# Where one GPU's model step spends its time, per kernel family: bench_model_step on a generated
# model (default qwen3-30b-a3b) times the steps, then Nsight Compute (ncu, the profiler this
# machine has) times every kernel of the same steps on its own, graph nodes included, and
# scripts/gpu/profile_step.py breaks the median step of each phase down against the measured
# step time (the rest: host work, launches and gaps).
#   scripts/gpu/profile_step.sh [PRESET] [N]   (EEP_DECODE_BATCHES, default 1,64,256)
# With N > 1 the steps run at EP=N over NCCL (one process per GPU, bench_model_step --size N):
# rank 0 is profiled, the others run beside it, so its exchange kernels include their waits.
# Output on stdout and in $OUT/profile-step.txt.
set -uo pipefail
# shellcheck source=scripts/gpu/env.sh
source "$(dirname "$0")/env.sh"
# shellcheck source=scripts/gpu/models.sh
source "$(dirname "$0")/models.sh"
cd "$EEP_ROOT" || exit 1
[ -x build-gpu/bin/bench_model_step ] || scripts/gpu/build.sh || exit 1
BIN=build-gpu/bin
OUTDIR=${OUT:-/tmp}
PRESET=${1:-qwen3-30b-a3b}
N=${2:-1}
BATCHES=${EEP_DECODE_BATCHES:-1,64,256}
NCU=$(command -v ncu)
for candidate in /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu; do
  [ -z "$NCU" ] && [ -x "$candidate" ] && NCU=$candidate
done
[ -n "$NCU" ] || { echo "ncu (Nsight Compute) is not installed here"; exit 1; }
generated_model "$PRESET" || exit 1
{
  nvidia-smi -L
  STEP_ARGS=(--prefill-seqs 8 --prefill-len 256 --decode-batches "$BATCHES" --skip-eager)
  echo "== bench_model_step ${STEP_ARGS[*]} --iters 20, $N rank(s)"
  step_bench "$N" "${STEP_ARGS[@]}" --iters 20 | tee "$OUTDIR/step-times.txt"
  # The measured ms of each phase, in run order: the prefill, then each decode batch.
  WALLS=$(awk '$1 == "prefill" || $1 == "decode" {print $(NF-2)}' "$OUTDIR/step-times.txt" | paste -sd,)
  echo "== ncu over rank 0 of bench_model_step ${STEP_ARGS[*]} --iters 4, $N rank(s)"
  STEP_BENCH_RANK0_PREFIX="$NCU --metrics gpu__time_duration.sum --graph-profiling node \
    --cache-control none --clock-control none --csv --print-units base \
    --log-file $OUTDIR/ncu.csv" step_bench "$N" "${STEP_ARGS[@]}" --iters 4 >/dev/null
  LABELS="prefill 8x256$(echo ",$BATCHES" | sed 's/,/,decode (graph) batch /g')"
  python3 scripts/gpu/profile_step.py "$OUTDIR/ncu.csv" --phases "$LABELS" --wall-ms "$WALLS"
} 2>&1 | tee "$OUTDIR/profile-step.txt"
exit "${PIPESTATUS[0]}"
