// The Qwen3-MoE forward of one rank on the CPU backend (fp32), over the paged KV cache, for a
// batch that mixes sequences of different lengths, prefill chunks and decode tokens
// (docs/qwen3_moe_reference.md has the exact semantics it matches). The MoE layers go through a
// MoeDispatcher, so the same forward runs at EP=1 and, with a process group, expert-parallel.
// One thread (the engine loop) calls it.
#pragma once

#include <cstdint>
#include <vector>

#include "eep/common/status.h"
#include "eep/worker/cpu/model_weights_cpu.h"
#include "eep/worker/cpu/moe_dispatcher_cpu.h"
#include "eep/worker/engine/kv_cache.h"

namespace eep::worker {

// New tokens of one sequence for one step: token_ids[i] sits at position start_pos + i. The KV
// cache already holds positions [0, start_pos) of the sequence.
struct SequenceChunk {
  uint64_t seq_id = 0;
  int64_t start_pos = 0;
  std::vector<int32_t> token_ids;
  bool all_logits = false;  // logits for every token (tests, prompt scoring); else the last only
};

struct ForwardOutput {
  std::vector<float> logits;       // [num_rows, vocab]
  std::vector<int64_t> first_row;  // per chunk: its first row in logits
  std::vector<int64_t> num_rows;   // per chunk: 1, or its token count when all_logits
  const float* row(size_t chunk_idx, int64_t i = -1) const;  // i = -1: the chunk's last row
  int64_t vocab = 0;
};

class ModelRunner {
 public:
  // KV storage for num_kv_blocks blocks of block_size positions per layer.
  ModelRunner(ModelWeights weights, int num_kv_blocks, int block_size);

  const ModelConfig& config() const { return weights_.config; }
  ModelWeights& weights() { return weights_; }

  // Runs the batch (possibly empty: a dummy step that still takes part in every MoE exchange).
  // `blocks` must hold start_pos + token count positions for every chunk.
  Result<ForwardOutput> forward(const std::vector<SequenceChunk>& batch,
                                const KvBlockManager& blocks, MoeDispatcher& moe);

 private:
  // Writes this step's keys and values into layer_idx's cache, then attends (attn_ = f(q_)).
  void attention(int layer_idx);

  ModelWeights weights_;
  int block_size_;
  std::vector<std::vector<float>> k_cache_;  // per layer [num_blocks, block_size, kv_heads, d]
  std::vector<std::vector<float>> v_cache_;

  // Per-step scratch, reused.
  std::vector<int32_t> ids_, positions_, token_seq_idx_, block_tables_;
  std::vector<int64_t> slot_mapping_;
  std::vector<float> x_, h_, q_, k_, v_, attn_, proj_, router_logits_, topk_weights_, moe_out_;
  std::vector<int32_t> topk_ids_;
  std::vector<float> expert_scratch_;
  int64_t max_blocks_per_seq_ = 0;
};

}  // namespace eep::worker
