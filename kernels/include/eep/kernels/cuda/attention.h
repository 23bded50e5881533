// Attention of the CUDA backend: the preparation of q, k and v after the fused QKV projection
// (per-head RMSNorm, RoPE, KV-cache store) and causal attention over the paged KV cache, for
// batches that mix decode tokens, prefill chunks and padding (DESIGN.md section 5). The cache of
// one layer is [num_blocks, block_size, num_kv_heads, head_dim] bf16 for keys and the same for
// values; slot = block * block_size + offset. Contracts: kernels::cpu::rmsnorm, rope,
// write_kv_cache and paged_attention (eep/kernels/{rmsnorm,rope,attention}.h).
// head_dim: a multiple of 8, at most 256. Device pointers must be 16-byte aligned.
#pragma once

#include <cstdint>

#include "eep/kernels/cuda/types.h"

namespace eep::kernels::cuda {

struct QkvPrepareArgs {
  // [num_tokens, (num_heads + 2 * num_kv_heads) * head_dim]: all q heads, then k heads, then v
  // heads (the output of the fused q/k/v projection).
  const bf16* qkv;
  const bf16* q_norm;           // [head_dim], shared by all q heads
  const bf16* k_norm;           // [head_dim], shared by all k heads
  const int32_t* positions;     // [num_tokens]
  const int64_t* slot_mapping;  // [num_tokens]; < 0: a padding token, nothing is written
  int64_t num_tokens;
  int64_t num_heads;
  int64_t num_kv_heads;
  int64_t head_dim;
  float eps;    // of the per-head RMSNorm
  float theta;  // RoPE base
  bf16* q_out;  // [num_tokens, num_heads, head_dim]; zeros for padding tokens
  bf16* k_cache;
  bf16* v_cache;
};

// q_out = rope(rmsnorm(q) * q_norm); k_cache[slot] = rope(rmsnorm(k) * k_norm);
// v_cache[slot] = v. fp32 math; RoPE's inv_freq and angle in fp32 as kernels/src/cpu/rope.cpp.
cudaError_t qkv_prepare(const QkvPrepareArgs& args, cudaStream_t stream);

// Upper bound of PagedAttentionArgs::max_splits: a token's positions are split over at most this
// many CTAs of one thread-block cluster, merged through distributed shared memory.
inline constexpr int kPagedAttentionMaxSplits = 8;

struct PagedAttentionArgs {
  const bf16* q;        // [num_tokens, num_heads, head_dim]
  const bf16* k_cache;  // [num_blocks, block_size, num_kv_heads, head_dim]
  const bf16* v_cache;
  const int32_t* block_tables;   // [num_seqs, max_blocks_per_seq]
  const int32_t* token_seq_idx;  // [num_tokens]: row of block_tables; < 0: padding, out = zeros
  const int32_t* positions;      // [num_tokens]: the token attends to positions 0..positions[t]
  int64_t num_tokens;
  int64_t num_heads;
  int64_t num_kv_heads;  // query head h uses kv head h / (num_heads / num_kv_heads)
  int64_t head_dim;
  int64_t block_size;
  int64_t max_blocks_per_seq;
  float scale;  // usually 1 / sqrt(head_dim)
  bf16* out;    // [num_tokens, num_heads, head_dim]
  // At most this many CTAs share one token's positions (1..kPagedAttentionMaxSplits; 1 = one
  // CTA per token and kv head). The launcher splits only when the grid is small and the
  // contexts long (max_blocks_per_seq * block_size); tests pin it to compare both paths.
  int max_splits = kPagedAttentionMaxSplits;
};

// Causal attention of each token over positions 0..positions[t] of its sequence (its own key is
// already in the cache), GQA, online softmax in fp32. One launch serves decode tokens and
// prefill chunks alike; the grid depends only on num_tokens, the head counts and
// max_blocks_per_seq, so the launch can be captured in a CUDA graph.
cudaError_t paged_attention(const PagedAttentionArgs& args, cudaStream_t stream);

}  // namespace eep::kernels::cuda
