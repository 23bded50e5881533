#include "eep/worker/cpu/model_runner_cpu.h"

#include <algorithm>
#include <cmath>

#include "eep/kernels/attention.h"
#include "eep/kernels/embedding.h"
#include "eep/kernels/expert_ffn.h"
#include "eep/kernels/gemm.h"
#include "eep/kernels/rmsnorm.h"
#include "eep/kernels/rope.h"
#include "eep/kernels/router.h"

namespace eep::worker {

namespace ops = eep::kernels::cpu;

const float* ForwardOutput::row(size_t chunk_idx, int64_t i) const {
  const int64_t r =
      i < 0 ? first_row[chunk_idx] + num_rows[chunk_idx] - 1 : first_row[chunk_idx] + i;
  return logits.data() + r * vocab;
}

ModelRunner::ModelRunner(ModelWeights weights, int num_kv_blocks, int block_size)
    : weights_(std::move(weights)), block_size_(block_size) {
  const ModelConfig& c = weights_.config;
  const size_t layer_floats =
      static_cast<size_t>(num_kv_blocks) * block_size * c.num_key_value_heads * c.head_dim;
  k_cache_.assign(c.num_hidden_layers, std::vector<float>(layer_floats, 0.0f));
  v_cache_.assign(c.num_hidden_layers, std::vector<float>(layer_floats, 0.0f));
}

void ModelRunner::attention(int layer_idx) {
  const ModelConfig& c = weights_.config;
  const int64_t num_tokens = static_cast<int64_t>(ids_.size());
  ops::write_kv_cache(k_.data(), v_.data(), slot_mapping_.data(), num_tokens, c.num_key_value_heads,
                      c.head_dim, k_cache_[layer_idx].data(), v_cache_[layer_idx].data());
  ops::PagedAttentionArgs args;
  args.q = q_.data();
  args.k_cache = k_cache_[layer_idx].data();
  args.v_cache = v_cache_[layer_idx].data();
  args.block_tables = block_tables_.data();
  args.token_seq_idx = token_seq_idx_.data();
  args.positions = positions_.data();
  args.num_tokens = num_tokens;
  args.num_heads = c.num_attention_heads;
  args.num_kv_heads = c.num_key_value_heads;
  args.head_dim = c.head_dim;
  args.block_size = block_size_;
  args.max_blocks_per_seq = max_blocks_per_seq_;
  args.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  args.out = attn_.data();
  ops::paged_attention(args);
}

Result<ForwardOutput> ModelRunner::forward(const std::vector<SequenceChunk>& batch,
                                           const KvBlockManager& blocks, MoeDispatcher& moe) {
  const ModelConfig& c = weights_.config;
  const int64_t hidden = c.hidden_size;
  const int64_t q_dim = int64_t{c.num_attention_heads} * c.head_dim;
  const int64_t kv_dim = int64_t{c.num_key_value_heads} * c.head_dim;
  const int64_t num_experts = c.num_experts;
  const int64_t top_k = c.num_experts_per_tok;

  // Flatten the batch: one row per new token.
  ids_.clear();
  positions_.clear();
  token_seq_idx_.clear();
  slot_mapping_.clear();
  max_blocks_per_seq_ = 1;
  for (const SequenceChunk& chunk : batch) {
    const int64_t end = chunk.start_pos + static_cast<int64_t>(chunk.token_ids.size());
    if (blocks.capacity_tokens(chunk.seq_id) < end) {
      return error(ErrorCode::kFailedPrecondition,
                   "sequence " + std::to_string(chunk.seq_id) + " has KV room for " +
                       std::to_string(blocks.capacity_tokens(chunk.seq_id)) + " positions, needs " +
                       std::to_string(end));
    }
    if (end > c.max_position_embeddings) {
      return error(ErrorCode::kInvalidArgument, "sequence " + std::to_string(chunk.seq_id) +
                                                    " reaches position " + std::to_string(end) +
                                                    ", beyond the model's " +
                                                    std::to_string(c.max_position_embeddings));
    }
    max_blocks_per_seq_ =
        std::max<int64_t>(max_blocks_per_seq_, blocks.block_table(chunk.seq_id).size());
  }
  block_tables_.assign(batch.size() * max_blocks_per_seq_, 0);
  for (size_t s = 0; s < batch.size(); ++s) {
    const SequenceChunk& chunk = batch[s];
    const auto& table = blocks.block_table(chunk.seq_id);
    std::copy(table.begin(), table.end(), block_tables_.begin() + s * max_blocks_per_seq_);
    for (size_t i = 0; i < chunk.token_ids.size(); ++i) {
      const int32_t id = chunk.token_ids[i];
      if (id < 0 || id >= c.vocab_size) {
        return error(ErrorCode::kInvalidArgument, "token id " + std::to_string(id) +
                                                      " outside the vocabulary of " +
                                                      std::to_string(c.vocab_size));
      }
      const int64_t pos = chunk.start_pos + static_cast<int64_t>(i);
      ids_.push_back(id);
      positions_.push_back(static_cast<int32_t>(pos));
      token_seq_idx_.push_back(static_cast<int32_t>(s));
      slot_mapping_.push_back(blocks.slot_of(chunk.seq_id, pos));
    }
  }
  const int64_t num_tokens = static_cast<int64_t>(ids_.size());

  x_.resize(num_tokens * hidden);
  h_.resize(num_tokens * hidden);
  q_.resize(num_tokens * q_dim);
  k_.resize(num_tokens * kv_dim);
  v_.resize(num_tokens * kv_dim);
  attn_.resize(num_tokens * q_dim);
  proj_.resize(num_tokens * hidden);
  router_logits_.resize(num_tokens * num_experts);
  topk_ids_.resize(num_tokens * top_k);
  topk_weights_.resize(num_tokens * top_k);
  moe_out_.resize(num_tokens * hidden);

  ops::embedding(weights_.embed.data(), c.vocab_size, ids_.data(), num_tokens, hidden, x_.data());
  const float eps = static_cast<float>(c.rms_norm_eps);
  const int64_t intermediate = c.moe_intermediate_size;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& w = weights_.layers[l];
    // Attention block.
    ops::rmsnorm(x_.data(), w.input_norm.data(), h_.data(), num_tokens, hidden, eps);
    ops::matmul_nt(h_.data(), w.q_proj.data(), q_.data(), num_tokens, q_dim, hidden);
    ops::matmul_nt(h_.data(), w.k_proj.data(), k_.data(), num_tokens, kv_dim, hidden);
    ops::matmul_nt(h_.data(), w.v_proj.data(), v_.data(), num_tokens, kv_dim, hidden);
    ops::rmsnorm(q_.data(), w.q_norm.data(), q_.data(), num_tokens * c.num_attention_heads,
                 c.head_dim, eps);
    ops::rmsnorm(k_.data(), w.k_norm.data(), k_.data(), num_tokens * c.num_key_value_heads,
                 c.head_dim, eps);
    const float theta = static_cast<float>(c.rope_theta);
    ops::rope(q_.data(), positions_.data(), num_tokens, c.num_attention_heads, c.head_dim, theta);
    ops::rope(k_.data(), positions_.data(), num_tokens, c.num_key_value_heads, c.head_dim, theta);
    attention(l);
    ops::matmul_nt(attn_.data(), w.o_proj.data(), proj_.data(), num_tokens, hidden, q_dim);
    for (int64_t i = 0; i < num_tokens * hidden; ++i) x_[i] += proj_[i];

    // MoE block.
    ops::rmsnorm(x_.data(), w.post_norm.data(), h_.data(), num_tokens, hidden, eps);
    ops::matmul_nt(h_.data(), w.router.data(), router_logits_.data(), num_tokens, num_experts,
                   hidden);
    ops::router_topk(router_logits_.data(), num_tokens, num_experts, top_k, c.norm_topk_prob,
                     topk_ids_.data(), topk_weights_.data());
    ExpertFn compute = [&](int layer_idx, int local_slot, const float* in, int64_t n, float* out) {
      const ExpertWeights& e = weights_.layers[layer_idx].slots[local_slot];
      expert_scratch_.resize(2 * n * intermediate);
      ops::expert_ffn(in, e.gate_proj.data(), e.up_proj.data(), e.down_proj.data(), n, hidden,
                      intermediate, expert_scratch_.data(), out);
    };
    EEP_RETURN_IF_ERROR(moe.forward(l, h_.data(), topk_ids_.data(), topk_weights_.data(),
                                    num_tokens, static_cast<int>(top_k), static_cast<int>(hidden),
                                    compute, moe_out_.data()));
    for (int64_t i = 0; i < num_tokens * hidden; ++i) x_[i] += moe_out_[i];
  }

  // Final norm and LM head, only on the rows whose logits are wanted.
  ForwardOutput output;
  output.vocab = c.vocab_size;
  std::vector<int64_t> rows;
  int64_t token_idx = 0;
  for (const SequenceChunk& chunk : batch) {
    const int64_t n = static_cast<int64_t>(chunk.token_ids.size());
    output.first_row.push_back(static_cast<int64_t>(rows.size()));
    output.num_rows.push_back(chunk.all_logits ? n : std::min<int64_t>(n, 1));
    for (int64_t i = chunk.all_logits ? 0 : n - 1; i < n && i >= 0; ++i)
      rows.push_back(token_idx + i);
    token_idx += n;
  }
  const int64_t num_rows = static_cast<int64_t>(rows.size());
  std::vector<float> selected(num_rows * hidden);
  for (int64_t r = 0; r < num_rows; ++r) {
    ops::rmsnorm(x_.data() + rows[r] * hidden, weights_.final_norm.data(),
                 selected.data() + r * hidden, 1, hidden, eps);
  }
  output.logits.resize(num_rows * c.vocab_size);
  ops::matmul_nt(selected.data(), weights_.lm_head_data(), output.logits.data(), num_rows,
                 c.vocab_size, hidden);
  return output;
}

}  // namespace eep::worker
