// Token embedding lookup on the device: the first op of the forward, producing the fp32 residual
// stream. Contract of kernels::cpu::embedding, except that an id outside [0, vocab) gives a row
// of zeros (padding tokens of a captured batch carry id -1).
#pragma once

#include <cstdint>

#include "eep/kernels/cuda/types.h"

namespace eep::kernels::cuda {

// out[t, :] = float(table[ids[t], :]), or zeros when ids[t] is not in [0, vocab).
// table [vocab, hidden] bf16, ids [num_tokens], out [num_tokens, hidden] fp32.
cudaError_t embedding(const bf16* table, int64_t vocab, const int32_t* ids, int64_t num_tokens,
                      int64_t hidden, float* out, cudaStream_t stream);

}  // namespace eep::kernels::cuda
