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

