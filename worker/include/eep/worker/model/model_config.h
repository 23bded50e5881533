// The model's shape, read from a Hugging Face config.json of model_type "qwen3_moe".
// What we cannot run yet (dense layers between sparse ones, attention bias, RoPE scaling,
// sliding windows) is refused with a message that says so, rather than run wrongly.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "eep/common/status.h"
#include "eep/worker/model/quantization_config.h"

namespace eep::worker {

struct ModelConfig {
  int vocab_size = 0;
  int hidden_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;
  int head_dim = 0;  // config.json may omit it: then hidden_size / num_attention_heads
  int moe_intermediate_size = 0;
  int num_experts = 0;
  int num_experts_per_tok = 0;
  bool norm_topk_prob = false;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  int max_position_embeddings = 0;
  std::string dtype = "bfloat16";  // torch_dtype / dtype as written; informative only
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;  // config.json allows one id or a list
  // Set when config.json has a quantization_config: then the attention and expert projections
  // may be stored as block-scaled F8_E4M3 (Checkpoint checks which are).
  std::optional<Fp8BlockQuantization> quantization;

  // Refuses nonsense (zero sizes, top-k > experts, heads not a multiple of kv heads, ...).
  Status validate() const;
  // A config.json that transformers (4.x and 5.x) loads as Qwen3MoeConfig.
  nlohmann::json to_json() const;
};

// `source` names the file in messages. kInvalidArgument for unsupported or nonsensical values.
Result<ModelConfig> parse_model_config(const nlohmann::json& config_json, std::string_view source);
// Reads and parses a config.json (kNotFound when missing, kDataLoss when not JSON).
Result<ModelConfig> load_model_config(const std::filesystem::path& path);

}  // namespace eep::worker
