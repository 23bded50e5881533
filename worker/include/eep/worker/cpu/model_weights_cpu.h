// The weights one rank holds, in fp32 host memory (the CPU backend): every non-expert weight,
// and for each layer the experts of this rank's physical slots of the placement. Loaded from a
// Checkpoint; a slot can be refilled later (expert moves) without touching the rest.
#pragma once

#include <cstddef>
#include <vector>

#include "eep/common/placement.h"
#include "eep/common/status.h"
#include "eep/worker/model/checkpoint.h"
#include "eep/worker/model/model_config.h"

namespace eep::worker {

struct LayerWeights {
  std::vector<float> input_norm;     // [H]
  std::vector<float> q_proj;         // [num_heads * head_dim, H]
  std::vector<float> k_proj;         // [num_kv_heads * head_dim, H]
  std::vector<float> v_proj;         // [num_kv_heads * head_dim, H]
  std::vector<float> o_proj;         // [H, num_heads * head_dim]
  std::vector<float> q_norm;         // [head_dim]
  std::vector<float> k_norm;         // [head_dim]
  std::vector<float> post_norm;      // [H]
  std::vector<float> router;         // [E, H]
  std::vector<ExpertWeights> slots;  // this rank's physical slots, local index order
};

struct ModelWeights {
  ModelConfig config;
  std::vector<float> embed;       // [V, H]
  std::vector<float> final_norm;  // [H]
  std::vector<float> lm_head;     // [V, H]; empty when tied to embed
  std::vector<LayerWeights> layers;

  const float* lm_head_data() const { return lm_head.empty() ? embed.data() : lm_head.data(); }

  // Non-expert weights, and the experts of `rank`'s slots in `placement`.
  static Result<ModelWeights> load(const Checkpoint& checkpoint, const Placement& placement,
                                   int rank);
  // The shapes load() gives, every weight zero and nothing read: a generation whose weights come
  // from peers (docs/weight_transfer.md).
  static ModelWeights allocate(const ModelConfig& config, int slots_per_rank);
  // The non-expert tensors in a fixed order (the weight transfer's pieces), and their sizes in
  // floats for `config` in that order.
  std::vector<std::vector<float>*> dense_tensors();
  static std::vector<size_t> dense_sizes(const ModelConfig& config);
  // (Re)fills one local slot with logical expert `expert_idx` of `layer_idx` from the checkpoint.
  Status load_slot(const Checkpoint& checkpoint, int layer_idx, int local_slot_idx, int expert_idx);
};

}  // namespace eep::worker
