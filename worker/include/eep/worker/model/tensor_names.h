// The checkpoint's tensor names and shapes, in one place, so that the writer (eep-mkmodel) and
// the reader (Checkpoint) cannot disagree. Names follow Hugging Face Qwen3-MoE checkpoints.
//
// Expert weights come in one of two layouts:
//  - kPerExpert (published checkpoints): model.layers.{l}.mlp.experts.{e}.gate_proj.weight [I, H],
//    up_proj.weight [I, H], down_proj.weight [H, I];
//  - kFused (transformers 5.x Qwen3MoeExperts): model.layers.{l}.mlp.experts.gate_up_proj
//    [E, 2I, H] (rows [0, I) are gate, [I, 2I) are up) and model.layers.{l}.mlp.experts.down_proj
//    [E, H, I]; no ".weight" suffix.
// Every weight is row-major [out_features, in_features], y = W x. Checked against transformers
// 5.17: it loads both layouts into the same model, and its save_pretrained writes kPerExpert.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "eep/worker/model/dtype.h"
#include "eep/worker/model/model_config.h"
#include "eep/worker/model/safetensors.h"

namespace eep::worker {

enum class ExpertLayout { kPerExpert, kFused };
std::string_view to_string(ExpertLayout layout);

namespace tensor_names {

std::string embed_tokens();                           // [V, H]
std::string final_norm();                             // [H]
std::string lm_head();                                // [V, H]; absent when tie_word_embeddings
std::string input_layernorm(int layer_idx);           // [H]
std::string q_proj(int layer_idx);                    // [num_heads * head_dim, H]
std::string k_proj(int layer_idx);                    // [num_kv_heads * head_dim, H]
std::string v_proj(int layer_idx);                    // [num_kv_heads * head_dim, H]
std::string o_proj(int layer_idx);                    // [H, num_heads * head_dim]
std::string q_norm(int layer_idx);                    // [head_dim]
std::string k_norm(int layer_idx);                    // [head_dim]
std::string post_attention_layernorm(int layer_idx);  // [H]
std::string router(int layer_idx);                    // mlp.gate.weight [E, H]
std::string expert_gate_proj(int layer_idx, int expert_idx);  // [I, H]
std::string expert_up_proj(int layer_idx, int expert_idx);    // [I, H]
std::string expert_down_proj(int layer_idx, int expert_idx);  // [H, I]
std::string fused_gate_up_proj(int layer_idx);                // [E, 2I, H]
std::string fused_down_proj(int layer_idx);                   // [E, H, I]

// "<prefix>.weight" -> "<prefix>.weight_scale_inv": the block scales of an F8_E4M3 weight.
std::string weight_scale_inv(std::string_view weight_name);
// True for the weights an FP8 checkpoint may store as F8_E4M3: the attention projections
// (q/k/v/o_proj) and the per-expert gate/up/down_proj, the linear layers Qwen3-MoE FP8
// checkpoints quantize. Embeddings, norms, the router (mlp.gate) and lm_head stay unquantized,
// and so do the fused expert tensors (transformers names their FP8 scales differently across
// versions; published FP8 checkpoints are per-expert).
bool is_fp8_quantizable(std::string_view name);

}  // namespace tensor_names

// Every tensor of a checkpoint with this config and layout, with its shape, in a stable order
// (embeddings, then layer by layer, then final norm and LM head); dtype is set to `dtype`.
// kF8E4M3 asks for an FP8 checkpoint (config.quantization set): the quantizable weights are
// F8_E4M3, each followed by its F32 weight_scale_inv, and every other tensor is BF16.
std::vector<TensorSpec> checkpoint_tensor_specs(const ModelConfig& config, ExpertLayout layout,
                                                DType dtype);

}  // namespace eep::worker
