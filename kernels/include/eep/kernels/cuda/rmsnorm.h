// RMSNorm of rows of the fp32 residual stream into a bf16 activation (the input of a projection).
// Contract of kernels::cpu::rmsnorm with the sum of squares in fp32 and the result rounded to
// bf16 once at the end.
#pragma once

#include <cstdint>

#include "eep/kernels/cuda/types.h"

namespace eep::kernels::cuda {

// out[r, :] = bf16(x[i, :] / sqrt(mean(x[i, :]^2) + eps) * weight) with i = rows ? rows[r] : r,
// for r < num_rows. x [*, hidden] fp32, weight [hidden] bf16, out [num_rows, hidden] bf16.
// rows (device, may be nullptr) picks input rows, so the final norm runs only on the rows whose
// logits are wanted; a negative rows[r] gives a row of zeros.
cudaError_t rmsnorm(const float* x, const int32_t* rows, const bf16* weight, bf16* out,
                    int64_t num_rows, int64_t hidden, float eps, cudaStream_t stream);

}  // namespace eep::kernels::cuda
