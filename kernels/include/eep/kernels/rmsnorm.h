// RMSNorm over the last dimension: out[t][i] = x[t][i] / sqrt(mean_i(x[t][i]^2) + eps) * weight[i].
// Row-major [num_tokens, hidden]; out may alias x.
#pragma once

#include <cstdint>

namespace eep::kernels::cpu {

void rmsnorm(const float* x, const float* weight, float* out, int64_t num_tokens, int64_t hidden,
             float eps);

}  // namespace eep::kernels::cpu
