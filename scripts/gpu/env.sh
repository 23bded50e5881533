# shellcheck shell=bash
# Sourced by the scripts in scripts/gpu on the GPU machine (Ubuntu 24.04, CUDA 13.0, NCCL 2.28.9
# in PyTorch's virtual environment, no ZeroMQ or Gloo): unpacks the packages that
# scripts/gpu/fetch-deps.sh downloaded (.deps/debs) into .deps/prefix and sets the paths that the
# build and the binaries need. NVLink multicast stays off for every process (it can take the
# host's GPUs down).
EEP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
EEP_PREFIX="$EEP_ROOT/.deps/prefix"
if [ -d "$EEP_ROOT/.deps/debs" ] && [ ! -f "$EEP_PREFIX/.unpacked" ]; then
  mkdir -p "$EEP_PREFIX"
  for deb in "$EEP_ROOT"/.deps/debs/*.deb; do dpkg -x "$deb" "$EEP_PREFIX"; done
  touch "$EEP_PREFIX/.unpacked"
fi
# NCCL 2.28.9 (the version of the CUDA headers here) sits in PyTorch's virtual environment there.
if [ -z "${EEP_NCCL_DIR:-}" ]; then
  for dir in /opt/torch/.venv/lib/python3*/site-packages/nvidia/nccl; do
    [ -d "$dir/lib" ] && EEP_NCCL_DIR=$dir
  done
fi
export EEP_NCCL_DIR=${EEP_NCCL_DIR:-}
# An environment variable: directories separated by ":" on Linux (";" is for -D lists).
export CMAKE_PREFIX_PATH="$EEP_PREFIX/usr${EEP_NCCL_DIR:+:$EEP_NCCL_DIR}${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export LD_LIBRARY_PATH="$EEP_PREFIX/usr/lib/x86_64-linux-gnu:$EEP_PREFIX/usr/lib${EEP_NCCL_DIR:+:$EEP_NCCL_DIR/lib}:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="/usr/local/cuda/bin:$PATH"
export NCCL_NVLS_ENABLE=0
# The tests find the binaries and test data here even when they were built elsewhere.
export EEP_BIN_DIR="$EEP_ROOT/build-gpu/bin"
export EEP_TEST_DATA_DIR="$EEP_ROOT/tests/data"
# The fleets these scripts start make their CURVE keys here at the first start; eepctl and
# eep-bench find them here too (docs/security.md).
export EEP_KEYS_DIR="${EEP_KEYS_DIR:-$EEP_ROOT/build-gpu/keys}"

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
