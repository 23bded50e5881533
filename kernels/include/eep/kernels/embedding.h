// Token embedding lookup: out[t, :] = table[ids[t], :].
#pragma once

#include <cstdint>

namespace eep::kernels::cpu {

// table [vocab, hidden], ids [num_tokens], out [num_tokens, hidden]. Every id must be in
// [0, vocab): the caller validates (asserted in debug builds only).
void embedding(const float* table, int64_t vocab, const int32_t* ids, int64_t num_tokens,
               int64_t hidden, float* out);

}  // namespace eep::kernels::cpu
