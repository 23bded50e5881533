#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "eep/worker/model/model_config.h"
#include "eep/worker/model/random_checkpoint.h"

namespace {

using eep::ErrorCode;
using eep::worker::ModelConfig;
using eep::worker::parse_model_config;
using nlohmann::json;

// Qwen/Qwen3-30B-A3B config.json as published (transformers 4.x spelling).
const char* kQwen3_30B_A3B = R"({
  "architectures": ["Qwen3MoeForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 151643, "decoder_sparse_step": 1, "eos_token_id": 151645,
  "head_dim": 128, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
  "intermediate_size": 6144, "max_position_embeddings": 40960, "max_window_layers": 48,
  "mlp_only_layers": [], "model_type": "qwen3_moe", "moe_intermediate_size": 768,
  "norm_topk_prob": true, "num_attention_heads": 32, "num_experts": 128,
  "num_experts_per_tok": 8, "num_hidden_layers": 48, "num_key_value_heads": 4,
  "output_router_logits": false, "rms_norm_eps": 1e-06, "rope_scaling": null,
  "rope_theta": 1000000.0, "router_aux_loss_coef": 0.001, "sliding_window": null,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.51.0",
  "use_cache": true, "use_sliding_window": false, "vocab_size": 151936
})";

json base() {
  return json::parse(kQwen3_30B_A3B);
}

eep::Status refusal(const json& config) {
  return parse_model_config(config, "config.json").status();
}

}  // namespace

TEST_CASE("model config: the published Qwen3-30B-A3B config.json", "[config]") {
  const auto config = parse_model_config(base(), "config.json");
  REQUIRE(config.is_ok());
  CHECK(config->vocab_size == 151936);
  CHECK(config->hidden_size == 2048);
  CHECK(config->num_hidden_layers == 48);
  CHECK(config->num_attention_heads == 32);
  CHECK(config->num_key_value_heads == 4);
  CHECK(config->head_dim == 128);
  CHECK(config->moe_intermediate_size == 768);
  CHECK(config->num_experts == 128);
  CHECK(config->num_experts_per_tok == 8);
  CHECK(config->norm_topk_prob);
  CHECK(config->rms_norm_eps == 1e-6);
  CHECK(config->rope_theta == 1e6);
  CHECK_FALSE(config->tie_word_embeddings);
  CHECK(config->max_position_embeddings == 40960);
  CHECK(config->dtype == "bfloat16");
  CHECK(config->bos_token_id == 151643);
  CHECK(config->eos_token_ids == std::vector<int64_t>{151645});

  // The preset eep-mkmodel writes is the same model.
  const auto preset = eep::worker::model_preset("qwen3-30b-a3b");
  REQUIRE(preset.is_ok());
  const auto reparsed = parse_model_config(preset->to_json(), "preset");
  REQUIRE(reparsed.is_ok());
  CHECK(reparsed->to_json() == config->to_json());
}

TEST_CASE("model config: transformers 5.x spellings", "[config]") {
  json config = base();
  config.erase("rope_theta");
  config.erase("torch_dtype");
  config.erase("num_experts");
  config.erase("head_dim");
  config["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 5e5}};
  config["num_local_experts"] = 64;
  config["dtype"] = "float32";
  config["eos_token_id"] = {151645, 151643};
  const auto parsed = parse_model_config(config, "config.json");
  REQUIRE(parsed.is_ok());
  CHECK(parsed->rope_theta == 5e5);
  CHECK(parsed->num_experts == 64);
  CHECK(parsed->dtype == "float32");
  CHECK(parsed->head_dim == 2048 / 32);  // derived when absent
  CHECK(parsed->eos_token_ids == std::vector<int64_t>{151645, 151643});
}

TEST_CASE("model config: the config.json transformers 5.17 save_pretrained writes", "[config]") {
  // Written by Qwen3MoeForCausalLM.save_pretrained (transformers 5.17.0) for the tiny preset.
  const auto parsed = parse_model_config(json::parse(R"({
    "architectures": ["Qwen3MoeForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": null, "decoder_sparse_step": 1, "dtype": "float32", "eos_token_id": null,
    "head_dim": 32, "hidden_act": "silu", "hidden_size": 128, "initializer_range": 0.02,
    "intermediate_size": 256, "max_position_embeddings": 4096, "mlp_only_layers": [],
    "model_type": "qwen3_moe", "moe_intermediate_size": 64, "norm_topk_prob": true,
    "num_attention_heads": 4, "num_experts_per_tok": 4, "num_hidden_layers": 4,
    "num_key_value_heads": 2, "num_local_experts": 16, "output_router_logits": false,
    "pad_token_id": null, "rms_norm_eps": 1e-06,
    "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"},
    "router_aux_loss_coef": 0.001, "sliding_window": null, "tie_word_embeddings": false,
    "transformers_version": "5.17.0", "use_cache": true, "use_sliding_window": false,
    "vocab_size": 512})"),
                                         "config.json");
  REQUIRE(parsed.is_ok());
  auto expected = eep::worker::model_preset("tiny");
  REQUIRE(expected.is_ok());
  expected->dtype = "float32";
  CHECK(parsed->to_json() == expected->to_json());
  CHECK_FALSE(parsed->bos_token_id.has_value());
  CHECK(parsed->eos_token_ids.empty());
}

TEST_CASE("model config: unsupported architectures are refused with a clear message", "[config]") {
  struct Case {
    const char* key;
    json value;
  };
  for (const auto& [key, value] : std::vector<Case>{
           {"model_type", "llama"},
           {"decoder_sparse_step", 2},
           {"mlp_only_layers", {0, 5}},
           {"attention_bias", true},
           {"use_sliding_window", true},
           {"rope_scaling", {{"rope_type", "yarn"}, {"factor", 4.0}}},
           {"rope_parameters", {{"rope_type", "yarn"}, {"rope_theta", 1e6}}},
           {"hidden_act", "gelu"},
       }) {
    json config = base();
    config[key] = value;
    const auto status = refusal(config);
    INFO(key << " = " << value.dump() << ": " << status.message());
    CHECK(status.code() == ErrorCode::kInvalidArgument);
    CHECK(status.message().find(key) != std::string::npos);
    CHECK(status.message().find("config.json") != std::string::npos);
  }
  json no_type = base();
  no_type.erase("model_type");
  CHECK(refusal(no_type).code() == ErrorCode::kInvalidArgument);
  CHECK(refusal(json::array()).code() == ErrorCode::kInvalidArgument);
}

TEST_CASE("model config: nonsense sizes are refused", "[config]") {
  struct Case {
    const char* key;
    json value;
    const char* expect;
  };
  for (const auto& [key, value, expect] : std::vector<Case>{
           {"hidden_size", 0, "hidden_size"},
           {"vocab_size", -5, "vocab_size"},
           {"num_hidden_layers", 1 << 30, "num_hidden_layers"},
           {"num_experts_per_tok", 129, "exceeds num_experts"},
           {"num_key_value_heads", 5, "not a multiple"},
           {"head_dim", 127, "even"},
           {"moe_intermediate_size", "768", "integer"},
           {"num_experts", 12.5, "integer"},
           {"vocab_size", nullptr, "missing"},
           {"rms_norm_eps", -1.0, "rms_norm_eps"},
           {"rope_theta", 0, "rope_theta"},
           {"norm_topk_prob", "yes", "norm_topk_prob"},
           {"eos_token_id", 200000, "eos_token_id"},
       }) {
    json config = base();
    config[key] = value;
    const auto status = refusal(config);
    INFO(key << " = " << value.dump() << ": " << status.message());
    CHECK(status.code() == ErrorCode::kInvalidArgument);
    CHECK(status.message().find(expect) != std::string::npos);
  }
}

TEST_CASE("model config: files that are missing or not JSON", "[config]") {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("eep_test_model_config_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  CHECK(eep::worker::load_model_config(dir / "none.json").status().code() == ErrorCode::kNotFound);
  std::ofstream(dir / "bad.json") << "{\"model_type\": \"qwen3_moe\",";
  const auto bad = eep::worker::load_model_config(dir / "bad.json");
  CHECK(bad.status().code() == ErrorCode::kDataLoss);
  CHECK(bad.status().message().find("bad.json") != std::string::npos);
  std::ofstream(dir / "good.json") << kQwen3_30B_A3B;
  CHECK(eep::worker::load_model_config(dir / "good.json").is_ok());
  std::filesystem::remove_all(dir);
}
