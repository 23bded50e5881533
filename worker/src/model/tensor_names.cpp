#include "eep/worker/model/tensor_names.h"

#include "eep/common/check.h"
#include "eep/worker/model/block_fp8.h"

namespace eep::worker {

std::string_view to_string(ExpertLayout layout) {
  return layout == ExpertLayout::kFused ? "fused" : "per-expert";
}

namespace tensor_names {
namespace {

std::string layer(int layer_idx, std::string_view suffix) {
  return "model.layers." + std::to_string(layer_idx) + "." + std::string(suffix);
}

std::string expert(int layer_idx, int expert_idx, std::string_view suffix) {
  return layer(layer_idx, "mlp.experts." + std::to_string(expert_idx) + "." + std::string(suffix));
}

}  // namespace

std::string embed_tokens() {
  return "model.embed_tokens.weight";
}
std::string final_norm() {
  return "model.norm.weight";
}
std::string lm_head() {
  return "lm_head.weight";
}
std::string input_layernorm(int l) {
  return layer(l, "input_layernorm.weight");
}
std::string q_proj(int l) {
  return layer(l, "self_attn.q_proj.weight");
}
std::string k_proj(int l) {
  return layer(l, "self_attn.k_proj.weight");
}
std::string v_proj(int l) {
  return layer(l, "self_attn.v_proj.weight");
}
std::string o_proj(int l) {
  return layer(l, "self_attn.o_proj.weight");
}
std::string q_norm(int l) {
  return layer(l, "self_attn.q_norm.weight");
}
std::string k_norm(int l) {
  return layer(l, "self_attn.k_norm.weight");
}
std::string post_attention_layernorm(int l) {
  return layer(l, "post_attention_layernorm.weight");
}
std::string router(int l) {
  return layer(l, "mlp.gate.weight");
}
std::string expert_gate_proj(int l, int e) {
  return expert(l, e, "gate_proj.weight");
}
std::string expert_up_proj(int l, int e) {
  return expert(l, e, "up_proj.weight");
}
std::string expert_down_proj(int l, int e) {
  return expert(l, e, "down_proj.weight");
}
std::string fused_gate_up_proj(int l) {
  return layer(l, "mlp.experts.gate_up_proj");
}
std::string fused_down_proj(int l) {
  return layer(l, "mlp.experts.down_proj");
}

std::string weight_scale_inv(std::string_view weight_name) {
  constexpr std::string_view kSuffix = ".weight";
  if (weight_name.ends_with(kSuffix)) weight_name.remove_suffix(kSuffix.size());
  return std::string(weight_name) + ".weight_scale_inv";
}

bool is_fp8_quantizable(std::string_view name) {
  if (!name.starts_with("model.layers.")) return false;
  for (std::string_view attention : {".self_attn.q_proj.weight", ".self_attn.k_proj.weight",
                                     ".self_attn.v_proj.weight", ".self_attn.o_proj.weight"}) {
    if (name.ends_with(attention)) return true;
  }
  if (name.find(".mlp.experts.") == std::string_view::npos) return false;
  for (std::string_view expert : {".gate_proj.weight", ".up_proj.weight", ".down_proj.weight"}) {
    if (name.ends_with(expert)) return true;
  }
  return false;
}

}  // namespace tensor_names

std::vector<TensorSpec> checkpoint_tensor_specs(const ModelConfig& config, ExpertLayout layout,
                                                DType dtype) {
  namespace names = tensor_names;
  const int64_t hidden = config.hidden_size;
  const int64_t inter = config.moe_intermediate_size;
  const int64_t experts = config.num_experts;
  const int64_t q_rows = int64_t{config.num_attention_heads} * config.head_dim;
  const int64_t kv_rows = int64_t{config.num_key_value_heads} * config.head_dim;
  EEP_CHECK_MSG(dtype != DType::kF8E4M3 || config.quantization,
                "an FP8 checkpoint needs config.quantization (its block size)");
  std::vector<TensorSpec> specs;
  auto add = [&](std::string name, std::vector<int64_t> shape) {
    if (dtype != DType::kF8E4M3) {
      specs.push_back({std::move(name), dtype, std::move(shape)});
    } else if (!names::is_fp8_quantizable(name)) {
      specs.push_back({std::move(name), DType::kBF16, std::move(shape)});
    } else {
      const Fp8BlockGeometry geometry{shape[0], shape[1], config.quantization->block_rows,
                                      config.quantization->block_cols};
      std::string scale_name = names::weight_scale_inv(name);
      specs.push_back({std::move(name), DType::kF8E4M3, std::move(shape)});
      specs.push_back({std::move(scale_name), DType::kF32, geometry.scale_shape()});
    }
  };
  add(names::embed_tokens(), {config.vocab_size, hidden});
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    add(names::input_layernorm(l), {hidden});
    add(names::q_proj(l), {q_rows, hidden});
    add(names::k_proj(l), {kv_rows, hidden});
    add(names::v_proj(l), {kv_rows, hidden});
    add(names::o_proj(l), {hidden, q_rows});
    add(names::q_norm(l), {config.head_dim});
    add(names::k_norm(l), {config.head_dim});
    add(names::post_attention_layernorm(l), {hidden});
    add(names::router(l), {experts, hidden});
    if (layout == ExpertLayout::kFused) {
      add(names::fused_gate_up_proj(l), {experts, 2 * inter, hidden});
      add(names::fused_down_proj(l), {experts, hidden, inter});
    } else {
      for (int e = 0; e < config.num_experts; ++e) {
        add(names::expert_gate_proj(l, e), {inter, hidden});
        add(names::expert_up_proj(l, e), {inter, hidden});
        add(names::expert_down_proj(l, e), {hidden, inter});
      }
    }
  }
  add(names::final_norm(), {hidden});
  if (!config.tie_word_embeddings) add(names::lm_head(), {config.vocab_size, hidden});
  return specs;
}

}  // namespace eep::worker
