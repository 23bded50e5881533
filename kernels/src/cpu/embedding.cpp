#include "eep/kernels/embedding.h"

#include <cstring>

namespace eep::kernels::cpu {

void embedding(const float* table, const int32_t* ids, int64_t num_tokens, int64_t hidden,
               float* out) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    std::memcpy(out + t * hidden, table + static_cast<int64_t>(ids[t]) * hidden,
                hidden * sizeof(float));
  }
}

}  // namespace eep::kernels::cpu
