// SwiGLU's activation between the two expert GEMMs of a MoE layer (grouped_gemm.h). CPU
// contract: kernels::cpu's expert FFN (expert_ffn.h) on the same rounded inputs.
#pragma once

#include <cstdint>

#include "eep/kernels/cuda/types.h"

namespace eep::kernels::cuda {

// out[r, i] = silu(gate_up[r, i]) * gate_up[r, intermediate + i] (silu(g) = g / (1 + e^-g), in
// fp32) for r < *num_rows (device) and i < intermediate. gate_up [max_rows, 2 * intermediate],
// out [max_rows, intermediate]. The grid depends on host arguments only (graph-capturable).
cudaError_t silu_mul(const bf16* gate_up, const int32_t* num_rows, int64_t max_rows,
                     int64_t intermediate, bf16* out, cudaStream_t stream);

}  // namespace eep::kernels::cuda
