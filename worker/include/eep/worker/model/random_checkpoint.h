// Checkpoints with seeded random weights in the Hugging Face Qwen3-MoE layout (what eep-mkmodel
// writes): named model shapes, deterministic values, streamed tensor by tensor to disk.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "eep/common/status.h"
#include "eep/worker/model/dtype.h"
#include "eep/worker/model/model_config.h"
#include "eep/worker/model/tensor_names.h"

namespace eep::worker {

// "tiny" (CI), "small", "qwen3-30b-a3b" (the real model's shape).
std::vector<std::string_view> model_preset_names();
Result<ModelConfig> model_preset(std::string_view name);

struct RandomCheckpointOptions {
  uint64_t seed = 0;
  // F32, BF16 or F16; or F8_E4M3 for an FP8 checkpoint as Hugging Face fine-grained FP8 lays it
  // out: the attention and expert projections quantized block by block (scale = the block's
  // largest magnitude / 448, stored F32 as weight_scale_inv), every other tensor BF16, and a
  // quantization_config in config.json. Per-expert layout only.
  DType dtype = DType::kBF16;
  // weight_block_size of an FP8 checkpoint: [rows, cols] of each block.
  int64_t fp8_block_rows = 128;
  int64_t fp8_block_cols = 128;
  ExpertLayout expert_layout = ExpertLayout::kPerExpert;
  // 0: experts equally likely. A > 0 biases router row e by about A / (e + 1) logits (a
  // Zipf-like preference for low expert ids), via a shared offset in the embeddings that the
  // router rows also point along. For load-balancing (EPLB) experiments. Run through
  // transformers (tiny, A = 4, 256 random tokens), the top-4 counts of layer 0 were
  // [242, 164, 160, 8, 44, 162, ...] against about 64 each for A = 0: a few experts take most
  // tokens, though attention makes the order only roughly follow the expert id.
  double router_skew = 0.0;
  // Files larger than this are split into shards listed by model.safetensors.index.json.
  uint64_t max_shard_bytes = 2ull << 30;
};

// Writes config.json and the weights into `dir` (created if needed). Values depend only on the
// seed, the tensor and the element (not on dtype rounding order, layout or sharding): the same
// seed gives the same expert weights in the per-expert and the fused layout.
Status write_random_checkpoint(const ModelConfig& config, const RandomCheckpointOptions& options,
                               const std::filesystem::path& dir);

}  // namespace eep::worker
