#include "eep/kernels/attention.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <vector>

#include "eep/kernels/gemm.h"

namespace eep::kernels::cpu {

void write_kv_cache(const float* k, const float* v, const int64_t* slot_mapping, int64_t num_tokens,
                    int64_t num_kv_heads, int64_t head_dim, float* k_cache, float* v_cache) {
  const int64_t row = num_kv_heads * head_dim;
  for (int64_t t = 0; t < num_tokens; ++t) {
    assert(slot_mapping[t] >= 0 && "negative KV cache slot");
    std::memcpy(k_cache + slot_mapping[t] * row, k + t * row, row * sizeof(float));
    std::memcpy(v_cache + slot_mapping[t] * row, v + t * row, row * sizeof(float));
  }
}

void paged_attention(const PagedAttentionArgs& a) {
  assert(a.num_kv_heads > 0 && a.num_heads % a.num_kv_heads == 0);
  const int64_t group = a.num_heads / a.num_kv_heads;
  const int64_t kv_row = a.num_kv_heads * a.head_dim;
  std::vector<float> scores;
  for (int64_t t = 0; t < a.num_tokens; ++t) {
    const int32_t* table =
        a.block_tables + static_cast<int64_t>(a.token_seq_idx[t]) * a.max_blocks_per_seq;
    const int64_t num_keys = static_cast<int64_t>(a.positions[t]) + 1;
    assert(a.positions[t] >= 0 && num_keys <= a.max_blocks_per_seq * a.block_size &&
           "position beyond the sequence's block table");
    scores.resize(num_keys);
    for (int64_t h = 0; h < a.num_heads; ++h) {
      const int64_t kv_head = h / group;
      const float* q = a.q + (t * a.num_heads + h) * a.head_dim;
      float max_score = -INFINITY;
      for (int64_t p = 0; p < num_keys; ++p) {
        const int64_t slot =
            static_cast<int64_t>(table[p / a.block_size]) * a.block_size + p % a.block_size;
        const float* key = a.k_cache + slot * kv_row + kv_head * a.head_dim;
        scores[p] = dot(q, key, a.head_dim) * a.scale;
        max_score = std::max(max_score, scores[p]);
      }
      float sum = 0.0f;
      for (int64_t p = 0; p < num_keys; ++p) {
        scores[p] = std::exp(scores[p] - max_score);
        sum += scores[p];
      }
      const float inv_sum = 1.0f / sum;
      float* out = a.out + (t * a.num_heads + h) * a.head_dim;
      std::fill(out, out + a.head_dim, 0.0f);
      for (int64_t p = 0; p < num_keys; ++p) {
        const int64_t slot =
            static_cast<int64_t>(table[p / a.block_size]) * a.block_size + p % a.block_size;
        const float* value = a.v_cache + slot * kv_row + kv_head * a.head_dim;
        const float w = scores[p] * inv_sum;
        for (int64_t d = 0; d < a.head_dim; ++d) out[d] += w * value[d];
      }
    }
  }
}

}  // namespace eep::kernels::cpu
