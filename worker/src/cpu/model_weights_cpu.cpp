#include "eep/worker/cpu/model_weights_cpu.h"

#include "eep/worker/model/tensor_names.h"

namespace eep::worker {

Result<ModelWeights> ModelWeights::load(const Checkpoint& checkpoint, const Placement& placement,
                                        int rank) {
  const ModelConfig& config = checkpoint.config();
  EEP_RETURN_IF_ERROR(placement.validate());
  if (placement.num_layers != config.num_hidden_layers ||
      placement.num_logical_experts != config.num_experts) {
    return error(ErrorCode::kInvalidArgument,
                 "placement (" + std::to_string(placement.num_layers) + " layers, " +
                     std::to_string(placement.num_logical_experts) +
                     " experts) does not fit the model (" +
                     std::to_string(config.num_hidden_layers) + " layers, " +
                     std::to_string(config.num_experts) + " experts)");
  }
  if (rank < 0 || rank >= placement.num_ranks) {
    return error(ErrorCode::kInvalidArgument, "rank " + std::to_string(rank) + " outside " +
                                                  std::to_string(placement.num_ranks) + " ranks");
  }
  const int64_t hidden = config.hidden_size;
  const int64_t q_dim = int64_t{config.num_attention_heads} * config.head_dim;
  const int64_t kv_dim = int64_t{config.num_key_value_heads} * config.head_dim;
  ModelWeights weights;
  weights.config = config;
  EEP_ASSIGN_OR_RETURN(weights.embed, checkpoint.read_f32(tensor_names::embed_tokens(),
                                                          {config.vocab_size, hidden}));
  EEP_ASSIGN_OR_RETURN(weights.final_norm,
                       checkpoint.read_f32(tensor_names::final_norm(), {hidden}));
  if (!config.tie_word_embeddings) {
    EEP_ASSIGN_OR_RETURN(weights.lm_head,
                         checkpoint.read_f32(tensor_names::lm_head(), {config.vocab_size, hidden}));
  }
  weights.layers.resize(config.num_hidden_layers);
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    LayerWeights& layer = weights.layers[l];
    EEP_ASSIGN_OR_RETURN(layer.input_norm,
                         checkpoint.read_f32(tensor_names::input_layernorm(l), {hidden}));
    EEP_ASSIGN_OR_RETURN(layer.q_proj,
                         checkpoint.read_f32(tensor_names::q_proj(l), {q_dim, hidden}));
    EEP_ASSIGN_OR_RETURN(layer.k_proj,
                         checkpoint.read_f32(tensor_names::k_proj(l), {kv_dim, hidden}));
    EEP_ASSIGN_OR_RETURN(layer.v_proj,
                         checkpoint.read_f32(tensor_names::v_proj(l), {kv_dim, hidden}));
    EEP_ASSIGN_OR_RETURN(layer.o_proj,
                         checkpoint.read_f32(tensor_names::o_proj(l), {hidden, q_dim}));
    EEP_ASSIGN_OR_RETURN(layer.q_norm,
                         checkpoint.read_f32(tensor_names::q_norm(l), {config.head_dim}));
    EEP_ASSIGN_OR_RETURN(layer.k_norm,
                         checkpoint.read_f32(tensor_names::k_norm(l), {config.head_dim}));
    EEP_ASSIGN_OR_RETURN(layer.post_norm,
                         checkpoint.read_f32(tensor_names::post_attention_layernorm(l), {hidden}));
    EEP_ASSIGN_OR_RETURN(
        layer.router, checkpoint.read_f32(tensor_names::router(l), {config.num_experts, hidden}));
    layer.slots.resize(placement.slots_per_rank);
    for (int local = 0; local < placement.slots_per_rank; ++local) {
      const int slot = rank * placement.slots_per_rank + local;
      EEP_RETURN_IF_ERROR(weights.load_slot(checkpoint, l, local, placement.logical_of(l, slot)));
    }
  }
  return weights;
}

Status ModelWeights::load_slot(const Checkpoint& checkpoint, int layer_idx, int local_slot_idx,
                               int expert_idx) {
  EEP_CHECK(layer_idx >= 0 && layer_idx < static_cast<int>(layers.size()));
  auto& slots = layers[layer_idx].slots;
  EEP_CHECK(local_slot_idx >= 0 && local_slot_idx < static_cast<int>(slots.size()));
  auto expert = checkpoint.read_expert(layer_idx, expert_idx);
  if (!expert.is_ok()) return expert.status();
  slots[local_slot_idx] = std::move(expert).value();
  return Status::ok();
}

std::vector<std::vector<float>*> ModelWeights::dense_tensors() {
  std::vector<std::vector<float>*> tensors{&embed, &final_norm};
  if (!config.tie_word_embeddings) tensors.push_back(&lm_head);
  for (LayerWeights& layer : layers) {
    for (std::vector<float>* tensor :
         {&layer.input_norm, &layer.q_proj, &layer.k_proj, &layer.v_proj, &layer.o_proj,
          &layer.q_norm, &layer.k_norm, &layer.post_norm, &layer.router}) {
      tensors.push_back(tensor);
    }
  }
  return tensors;
}

std::vector<size_t> ModelWeights::dense_sizes(const ModelConfig& config) {
  const size_t hidden = config.hidden_size;
  const size_t vocab = config.vocab_size;
  const size_t head_dim = config.head_dim;
  const size_t q_dim = size_t{static_cast<size_t>(config.num_attention_heads)} * head_dim;
  const size_t kv_dim = size_t{static_cast<size_t>(config.num_key_value_heads)} * head_dim;
  std::vector<size_t> sizes{vocab * hidden, hidden};
  if (!config.tie_word_embeddings) sizes.push_back(vocab * hidden);
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    for (size_t size :
         {hidden, q_dim * hidden, kv_dim * hidden, kv_dim * hidden, hidden * q_dim, head_dim,
          head_dim, hidden, static_cast<size_t>(config.num_experts) * hidden}) {
      sizes.push_back(size);
    }
  }
  return sizes;
}

ModelWeights ModelWeights::allocate(const ModelConfig& config, int slots_per_rank) {
  ModelWeights weights;
  weights.config = config;
  weights.layers.resize(config.num_hidden_layers);
  const std::vector<size_t> sizes = dense_sizes(config);
  const std::vector<std::vector<float>*> tensors = weights.dense_tensors();
  EEP_CHECK(sizes.size() == tensors.size());
  for (size_t t = 0; t < tensors.size(); ++t) tensors[t]->assign(sizes[t], 0.0f);
  const size_t matrix = static_cast<size_t>(config.moe_intermediate_size) * config.hidden_size;
  for (LayerWeights& layer : weights.layers) {
    layer.slots.resize(slots_per_rank);
    for (ExpertWeights& expert : layer.slots) {
      expert.gate_proj.assign(matrix, 0.0f);
      expert.up_proj.assign(matrix, 0.0f);
      expert.down_proj.assign(matrix, 0.0f);
    }
  }
  return weights;
}

}  // namespace eep::worker
