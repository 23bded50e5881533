# shellcheck shell=bash
# Sourced after env.sh by the GPU scripts that run a generated model: the checkpoint
# (generated_model) and the model-step benchmark over N GPUs (step_bench).

# generated_model PRESET [NAME]: sets MODEL to a checkpoint of `eep-mkmodel --preset PRESET --seed 1
# $EEP_MKMODEL_ARGS` (random bf16 weights) in $EEP_MODEL_CACHE (default /dev/shm/eep-models)
# under NAME (default PRESET), generating it on first use. eep-mkmodel writes config.json first,
# so the checkpoint is written under NAME.partial and renamed when complete: a generation cut
# short (a device call's time limit, a full /dev/shm) is never taken for a checkpoint.
generated_model() {
  local preset=$1 cache=${EEP_MODEL_CACHE:-/dev/shm/eep-models} start=$SECONDS
  MODEL="$cache/${2:-$preset}"
  [ -f "$MODEL/config.json" ] && return 0
  mkdir -p "$cache"
  rm -rf "$MODEL.partial"
  # shellcheck disable=SC2086 # EEP_MKMODEL_ARGS is a list of arguments
  "${BIN:-$EEP_ROOT/build-gpu/bin}/eep-mkmodel" --preset "$preset" --seed 1 ${EEP_MKMODEL_ARGS:-} \
    --out "$MODEL.partial" || { rm -rf "$MODEL.partial"; return 1; }
  rm -rf "$MODEL"
  mv "$MODEL.partial" "$MODEL"
  echo "generated $MODEL in $((SECONDS - start)) s ($(du -sh "$MODEL" | cut -f1))"
}

# step_bench N [bench_model_step arguments...]: bench_model_step on $MODEL as N processes, one per
# GPU (an EP group over NCCL), rank 0's table on stdout, the other ranks' output in
# $OUTDIR/bench-step-rankR.log. $STEP_BENCH_RANK0_PREFIX (words) runs rank 0 under another
# program, such as a profiler.
step_bench() {
  local n=$1 port=$((29500 + RANDOM % 1000)) pids=() r rc
  shift
  for ((r = 1; r < n; r++)); do
    "${BIN:-$EEP_ROOT/build-gpu/bin}/bench_model_step" --model "$MODEL" --rank $r --size "$n" \
      --store-port $port "$@" >"${OUTDIR:-/tmp}/bench-step-rank$r.log" 2>&1 &
    pids+=($!)
  done
  # shellcheck disable=SC2086 # the prefix is a list of words
  ${STEP_BENCH_RANK0_PREFIX:-} "${BIN:-$EEP_ROOT/build-gpu/bin}/bench_model_step" --model "$MODEL" \
    --rank 0 --size "$n" --store-port $port "$@"
  rc=$?
  for r in "${pids[@]}"; do wait "$r" || rc=1; done
  return $rc
}
