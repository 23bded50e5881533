// RMSNorm over the last dimension: out[t][i] = x[t][i] / sqrt(mean_i(x[t][i]^2) + eps) * weight[i].
// Row-major [num_tokens, hidden]; out may alias x. The mean of squares is summed in double.
// Per-head norms (Qwen3's q_norm / k_norm, weight [head_dim] shared by all heads) are the same
// call on [num_tokens * num_heads, head_dim].
#pragma once

#include <cstdint>

namespace eep::kernels::cpu {

void rmsnorm(const float* x, const float* weight, float* out, int64_t num_tokens, int64_t hidden,
             float eps);

}  // namespace eep::kernels::cpu
