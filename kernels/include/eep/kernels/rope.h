// Rotary position embedding as Qwen3 applies it (rotate_half, "neox" style): for head vector x
// of size d and position p, with inv_freq[i] = theta^(-2i/d) for i < d/2 and angle = p *
// inv_freq[i]:
//   x'[i]       = x[i] * cos(angle) - x[i + d/2] * sin(angle)
//   x'[i + d/2] = x[i + d/2] * cos(angle) + x[i] * sin(angle)
// inv_freq and the angle are computed in fp32 as transformers does (docs/qwen3_moe_reference.md).
#pragma once

#include <cstdint>

namespace eep::kernels::cpu {

// In place on x [num_tokens, num_heads, head_dim]; positions [num_tokens].
void rope(float* x, const int32_t* positions, int64_t num_tokens, int64_t num_heads,
          int64_t head_dim, float theta);

}  // namespace eep::kernels::cpu
