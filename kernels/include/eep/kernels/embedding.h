// Token embedding lookup: out[t, :] = table[ids[t], :]. ids must be in [0, vocab).
#pragma once

#include <cstdint>

namespace eep::kernels::cpu {

void embedding(const float* table, const int32_t* ids, int64_t num_tokens, int64_t hidden,
               float* out);

}  // namespace eep::kernels::cpu
