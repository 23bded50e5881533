// Conventions of every CUDA operation in eep::kernels::cuda (DESIGN.md section 5):
// - Storage is bf16 (weights, activations, KV cache); arithmetic accumulates in fp32. The
//   residual stream, router logits, MoE combine and LM-head logits are fp32.
// - Pointers are device memory unless a parameter says host. Sizes are elements unless the name
//   says bytes.
// - A launcher enqueues on `stream` and returns the launch's cudaError_t. It never synchronises,
//   allocates or reads device memory on the host, so every launcher may be captured in a CUDA
//   graph; counts that vary per step (valid tokens, rows per expert) live in device memory.
// - Each operation has the same contract as its CPU implementation in eep::kernels::cpu (the
//   header of the same name one folder up), and a GPU test compares the two on random inputs.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace eep::kernels::cuda {

using bf16 = __nv_bfloat16;

}  // namespace eep::kernels::cuda
