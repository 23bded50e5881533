#include "eep/kernels/rmsnorm.h"

#include <cmath>

namespace eep::kernels::cpu {

void rmsnorm(const float* x, const float* weight, float* out, int64_t num_tokens, int64_t hidden,
             float eps) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float* row = x + t * hidden;
    double sum_squares = 0.0;
    for (int64_t i = 0; i < hidden; ++i) sum_squares += static_cast<double>(row[i]) * row[i];
    const float scale =
        static_cast<float>(1.0 / std::sqrt(sum_squares / static_cast<double>(hidden) + eps));
    float* out_row = out + t * hidden;
    for (int64_t i = 0; i < hidden; ++i) out_row[i] = row[i] * scale * weight[i];
  }
}

}  // namespace eep::kernels::cpu
