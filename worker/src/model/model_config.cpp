#include "eep/worker/model/model_config.h"

#include <fstream>
#include <sstream>

namespace eep::worker {
namespace {

using nlohmann::json;

// Generous bounds that keep every size product inside int64 and catch garbage early.
constexpr int64_t kMaxDimension = 1 << 24;
constexpr int64_t kMaxLayers = 4096;

class Reader {
 public:
  Reader(const json& config, std::string_view source) : config_(config), source_(source) {}

  Status fail(const std::string& what) const {
    return error(ErrorCode::kInvalidArgument, source_ + ": " + what);
  }

  // A positive integer in [1, max]; `fallback` when absent (nullopt: required).
  Status get_int(std::string_view key, int& out, int64_t max, std::optional<int> fallback) const {
    const auto it = config_.find(key);
    if (it == config_.end() || it->is_null()) {
      if (!fallback) return fail("'" + std::string(key) + "' is missing");
      out = *fallback;
      return Status::ok();
    }
    if (!it->is_number_integer()) {
      return fail("'" + std::string(key) + "' must be an integer, found " + it->dump());
    }
    const int64_t value = it->get<int64_t>();
    if (value < 1 || value > max) {
      return fail("'" + std::string(key) + "' = " + std::to_string(value) +
                  " is out of range [1, " + std::to_string(max) + "]");
    }
    out = static_cast<int>(value);
    return Status::ok();
  }

  Status get_bool(std::string_view key, bool& out, bool fallback) const {
    const auto it = config_.find(key);
    if (it == config_.end() || it->is_null()) {
      out = fallback;
      return Status::ok();
    }
    if (!it->is_boolean()) return fail("'" + std::string(key) + "' must be true or false");
    out = it->get<bool>();
    return Status::ok();
  }

  Status get_positive_double(const json& object, std::string_view key, double& out) const {
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) return Status::ok();  // keep the default
    if (!it->is_number() || !(it->get<double>() > 0.0)) {
      return fail("'" + std::string(key) + "' must be a positive number, found " + it->dump());
    }
    out = it->get<double>();
    return Status::ok();
  }

  std::optional<int64_t> get_token_id(const json& value) const {
    if (value.is_number_integer() && value.get<int64_t>() >= 0) return value.get<int64_t>();
    return std::nullopt;
  }

 private:
  const json& config_;
  std::string source_;
};

// RoPE variants other than the plain one change positions' meaning: refuse rather than mis-run.
bool is_default_rope(const json& rope) {
  if (rope.is_null()) return true;
  if (!rope.is_object()) return false;
  for (const char* key : {"rope_type", "type"}) {
    const auto it = rope.find(key);
    if (it != rope.end() && !(it->is_string() && it->get<std::string>() == "default")) {
      return false;
    }
  }
  return true;
}

}  // namespace

Result<ModelConfig> parse_model_config(const json& config_json, std::string_view source) {
  const Reader reader(config_json, source);
  if (!config_json.is_object()) return reader.fail("config must be a JSON object");
  const auto model_type = config_json.find("model_type");
  if (model_type == config_json.end() || !model_type->is_string() ||
      model_type->get<std::string>() != "qwen3_moe") {
    return reader.fail(
        "model_type " +
        (model_type == config_json.end() ? std::string("(missing)") : model_type->dump()) +
        " is not supported; only \"qwen3_moe\" (Qwen3-MoE) is");
  }

  // Architecture features we do not implement yet.
  if (config_json.contains("decoder_sparse_step") &&
      config_json["decoder_sparse_step"] != json(1) &&
      !config_json["decoder_sparse_step"].is_null()) {
    return reader.fail("decoder_sparse_step = " + config_json["decoder_sparse_step"].dump() +
                       " (dense MLP layers between sparse ones) is not supported yet; only 1");
  }
  if (const auto it = config_json.find("mlp_only_layers");
      it != config_json.end() && !it->is_null() && !(it->is_array() && it->empty())) {
    return reader.fail("mlp_only_layers = " + it->dump() +
                       " (dense MLP layers) is not supported yet; only []");
  }
  for (const char* key : {"attention_bias", "use_sliding_window"}) {
    if (const auto it = config_json.find(key);
        it != config_json.end() && !it->is_null() && *it != json(false)) {
      return reader.fail(std::string(key) + " = " + it->dump() + " is not supported yet");
    }
  }
  if (const auto it = config_json.find("rope_scaling");
      it != config_json.end() && !is_default_rope(*it)) {
    return reader.fail("rope_scaling = " + it->dump() +
                       " is not supported yet; only plain RoPE (null)");
  }
  if (const auto it = config_json.find("hidden_act");
      it != config_json.end() && !it->is_null() && *it != json("silu")) {
    return reader.fail("hidden_act = " + it->dump() + " is not supported; only \"silu\"");
  }

  ModelConfig config;
  EEP_RETURN_IF_ERROR(reader.get_int("vocab_size", config.vocab_size, kMaxDimension, {}));
  EEP_RETURN_IF_ERROR(reader.get_int("hidden_size", config.hidden_size, kMaxDimension, {}));
  EEP_RETURN_IF_ERROR(
      reader.get_int("num_hidden_layers", config.num_hidden_layers, kMaxLayers, {}));
  EEP_RETURN_IF_ERROR(
      reader.get_int("num_attention_heads", config.num_attention_heads, kMaxDimension, {}));
  EEP_RETURN_IF_ERROR(reader.get_int("num_key_value_heads", config.num_key_value_heads,
                                     kMaxDimension, config.num_attention_heads));
  EEP_RETURN_IF_ERROR(
      reader.get_int("moe_intermediate_size", config.moe_intermediate_size, kMaxDimension, {}));
  // transformers 5.x stores num_experts as num_local_experts (an attribute_map alias).
  const char* experts_key =
      config_json.contains("num_experts") ? "num_experts" : "num_local_experts";
  EEP_RETURN_IF_ERROR(reader.get_int(experts_key, config.num_experts, kMaxDimension, {}));
  EEP_RETURN_IF_ERROR(
      reader.get_int("num_experts_per_tok", config.num_experts_per_tok, kMaxDimension, {}));
  EEP_RETURN_IF_ERROR(reader.get_int("max_position_embeddings", config.max_position_embeddings,
                                     kMaxDimension * 64, 32768));
  std::optional<int> default_head_dim;
  if (config.hidden_size % config.num_attention_heads == 0) {
    default_head_dim = config.hidden_size / config.num_attention_heads;
  }
  EEP_RETURN_IF_ERROR(reader.get_int("head_dim", config.head_dim, kMaxDimension, default_head_dim));
  EEP_RETURN_IF_ERROR(reader.get_bool("norm_topk_prob", config.norm_topk_prob, false));
  EEP_RETURN_IF_ERROR(reader.get_bool("tie_word_embeddings", config.tie_word_embeddings, false));
  EEP_RETURN_IF_ERROR(reader.get_positive_double(config_json, "rms_norm_eps", config.rms_norm_eps));

  // transformers 4.x writes rope_theta at top level; 5.x inside rope_parameters.
  EEP_RETURN_IF_ERROR(reader.get_positive_double(config_json, "rope_theta", config.rope_theta));
  if (const auto it = config_json.find("rope_parameters");
      it != config_json.end() && !it->is_null()) {
    if (!is_default_rope(*it)) {
      return reader.fail("rope_parameters = " + it->dump() +
                         " is not supported yet; only rope_type \"default\"");
    }
    EEP_RETURN_IF_ERROR(reader.get_positive_double(*it, "rope_theta", config.rope_theta));
  }

  for (const char* key : {"dtype", "torch_dtype"}) {
    if (const auto it = config_json.find(key); it != config_json.end() && it->is_string()) {
      config.dtype = it->get<std::string>();
      break;
    }
  }
  if (const auto it = config_json.find("bos_token_id"); it != config_json.end()) {
    config.bos_token_id = reader.get_token_id(*it);
  }
  if (const auto it = config_json.find("eos_token_id"); it != config_json.end()) {
    if (it->is_array()) {
      for (const auto& id : *it) {
        if (auto value = reader.get_token_id(id)) config.eos_token_ids.push_back(*value);
      }
    } else if (auto value = reader.get_token_id(*it)) {
      config.eos_token_ids.push_back(*value);
    }
  }
  if (const auto it = config_json.find("quantization_config");
      it != config_json.end() && !it->is_null()) {
    EEP_ASSIGN_OR_RETURN(config.quantization, parse_quantization_config(*it, source));
  }
  const Status valid = config.validate();
  if (!valid.is_ok()) return reader.fail(valid.message());
  return config;
}

Status ModelConfig::validate() const {
  auto fail = [](const std::string& what) { return error(ErrorCode::kInvalidArgument, what); };
  for (const auto& [name, value] : {std::pair{"vocab_size", vocab_size},
                                    {"hidden_size", hidden_size},
                                    {"num_hidden_layers", num_hidden_layers},
                                    {"num_attention_heads", num_attention_heads},
                                    {"num_key_value_heads", num_key_value_heads},
                                    {"head_dim", head_dim},
                                    {"moe_intermediate_size", moe_intermediate_size},
                                    {"num_experts", num_experts},
                                    {"num_experts_per_tok", num_experts_per_tok},
                                    {"max_position_embeddings", max_position_embeddings}}) {
    if (value < 1) return fail(std::string(name) + " must be >= 1, is " + std::to_string(value));
  }
  if (num_experts_per_tok > num_experts) {
    return fail("num_experts_per_tok = " + std::to_string(num_experts_per_tok) +
                " exceeds num_experts = " + std::to_string(num_experts));
  }
  if (num_attention_heads % num_key_value_heads != 0) {
    return fail(
        "num_attention_heads = " + std::to_string(num_attention_heads) +
        " is not a multiple of num_key_value_heads = " + std::to_string(num_key_value_heads));
  }
  if (head_dim % 2 != 0) {
    return fail("head_dim = " + std::to_string(head_dim) + " must be even for RoPE");
  }
  if (!(rms_norm_eps > 0.0) || !(rope_theta > 0.0)) {
    return fail("rms_norm_eps and rope_theta must be positive");
  }
  for (int64_t id : eos_token_ids) {
    if (id >= vocab_size) return fail("eos_token_id " + std::to_string(id) + " >= vocab_size");
  }
  if (bos_token_id && *bos_token_id >= vocab_size) {
    return fail("bos_token_id " + std::to_string(*bos_token_id) + " >= vocab_size");
  }
  return Status::ok();
}

json ModelConfig::to_json() const {
  json out = {
      {"architectures", {"Qwen3MoeForCausalLM"}},
      {"model_type", "qwen3_moe"},
      {"vocab_size", vocab_size},
      {"hidden_size", hidden_size},
      {"intermediate_size", moe_intermediate_size * num_experts_per_tok},  // unused: no dense MLP
      {"num_hidden_layers", num_hidden_layers},
      {"num_attention_heads", num_attention_heads},
      {"num_key_value_heads", num_key_value_heads},
      {"head_dim", head_dim},
      {"moe_intermediate_size", moe_intermediate_size},
      {"num_experts", num_experts},
      {"num_experts_per_tok", num_experts_per_tok},
      {"norm_topk_prob", norm_topk_prob},
      {"rms_norm_eps", rms_norm_eps},
      {"rope_theta", rope_theta},
      {"rope_scaling", nullptr},
      {"tie_word_embeddings", tie_word_embeddings},
      {"max_position_embeddings", max_position_embeddings},
      {"hidden_act", "silu"},
      {"attention_bias", false},
      {"attention_dropout", 0.0},
      {"use_sliding_window", false},
      {"sliding_window", nullptr},
      {"decoder_sparse_step", 1},
      {"mlp_only_layers", json::array()},
      {"initializer_range", 0.02},
      {"router_aux_loss_coef", 0.001},
      {"output_router_logits", false},
      {"use_cache", true},
      {"torch_dtype", dtype},
  };
  if (bos_token_id) out["bos_token_id"] = *bos_token_id;
  if (eos_token_ids.size() == 1) out["eos_token_id"] = eos_token_ids[0];
  if (eos_token_ids.size() > 1) out["eos_token_id"] = eos_token_ids;
  if (quantization) out["quantization_config"] = quantization->to_json();
  return out;
}

Result<ModelConfig> load_model_config(const std::filesystem::path& path) {
  std::ifstream file(path);
  if (!file) {
    return error(std::filesystem::exists(path) ? ErrorCode::kIoError : ErrorCode::kNotFound,
                 "cannot read " + path.string() + "; a model directory needs a config.json");
  }
  std::stringstream text;
  text << file.rdbuf();
  json config_json;
  try {
    config_json = json::parse(text.str());
  } catch (const json::exception& e) {
    return error(ErrorCode::kDataLoss, path.string() + " is not valid JSON: " + e.what());
  }
  return parse_model_config(config_json, path.string());
}

}  // namespace eep::worker
