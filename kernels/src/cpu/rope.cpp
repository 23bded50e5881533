#include "eep/kernels/rope.h"

#include <cassert>
#include <cmath>
#include <vector>

namespace eep::kernels::cpu {

void rope(float* x, const int32_t* positions, int64_t num_tokens, int64_t num_heads,
          int64_t head_dim, float theta) {
  assert(head_dim % 2 == 0 && "RoPE pairs x[i] with x[i + head_dim / 2]");
  const int64_t half = head_dim / 2;
  std::vector<float> inv_freq(half), cos_angle(half), sin_angle(half);
  for (int64_t i = 0; i < half; ++i) {
    // transformers: 1.0 / (base ** (torch.arange(0, dim, 2, dtype=int64).float() / dim))
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv_freq[i] = 1.0f / std::pow(theta, exponent);
  }
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(positions[t]) * inv_freq[i];
      cos_angle[i] = std::cos(angle);
      sin_angle[i] = std::sin(angle);
    }
    for (int64_t h = 0; h < num_heads; ++h) {
      float* v = x + (t * num_heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float x1 = v[i];
        const float x2 = v[i + half];
        v[i] = x1 * cos_angle[i] - x2 * sin_angle[i];
        v[i + half] = x2 * cos_angle[i] + x1 * sin_angle[i];
      }
    }
  }
}

}  // namespace eep::kernels::cpu
