#include "eep/kernels/embedding.h"

#include <cassert>
#include <cstring>

namespace eep::kernels::cpu {

void embedding(const float* table, [[maybe_unused]] int64_t vocab, const int32_t* ids,
               int64_t num_tokens, int64_t hidden, float* out) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    assert(ids[t] >= 0 && ids[t] < vocab && "token id outside the embedding table");
    std::memcpy(out + t * hidden, table + static_cast<int64_t>(ids[t]) * hidden,
                hidden * sizeof(float));
  }
}

}  // namespace eep::kernels::cpu
