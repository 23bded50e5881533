// Attention over a paged KV cache for a batch that mixes sequences, prefill chunks and decode
// tokens (DESIGN.md section 5). The cache of one layer is [num_blocks, block_size, num_kv_heads,
// head_dim] for keys and the same for values; a sequence's positions live in the blocks its block
// table lists, position p in block table[p / block_size] at offset p % block_size.
#pragma once

#include <cstdint>

namespace eep::kernels::cpu {

// Stores k and v of num_tokens tokens ([num_tokens, num_kv_heads, head_dim] each) at their cache
// slots (slot = block * block_size + offset).
void write_kv_cache(const float* k, const float* v, const int64_t* slot_mapping, int64_t num_tokens,
                    int64_t num_kv_heads, int64_t head_dim, float* k_cache, float* v_cache);

struct PagedAttentionArgs {
  const float* q;        // [num_tokens, num_heads, head_dim]
  const float* k_cache;  // [num_blocks, block_size, num_kv_heads, head_dim]
  const float* v_cache;
  const int32_t* block_tables;   // [num_seqs, max_blocks_per_seq]
  const int32_t* token_seq_idx;  // [num_tokens]: the sequence (row of block_tables) of each token
  const int32_t* positions;      // [num_tokens]: the token attends to positions 0..positions[t]
  int64_t num_tokens;
  int64_t num_heads;
  int64_t num_kv_heads;  // query head h uses kv head h / (num_heads / num_kv_heads)
  int64_t head_dim;
  int64_t block_size;
  int64_t max_blocks_per_seq;
  float scale;  // usually 1 / sqrt(head_dim)
  float* out;   // [num_tokens, num_heads, head_dim]
};

// Causal attention of each query token over its own sequence's cached keys and values, softmax
// in fp32 with the maximum subtracted. The token's own key must already be in the cache.
void paged_attention(const PagedAttentionArgs& args);

}  // namespace eep::kernels::cpu
