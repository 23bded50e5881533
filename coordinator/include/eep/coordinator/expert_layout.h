// What the coordinator knows of the model's experts, read from the checkpoint's config.json at
// start (it reads nothing else of the model): enough to give every generation its expert
// placement (DESIGN.md sections 4 and 8). The workers parse the full config themselves.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "eep/common/placement.h"
#include "eep/common/status.h"

namespace eep::coordinator {

struct ExpertLayout {
  int num_layers = 0;             // num_hidden_layers: every layer is an MoE layer (Qwen3-MoE)
  int num_experts = 0;            // logical experts per layer
  int num_redundant_experts = 0;  // extra physical slots wanted per layer (--num-redundant-experts)

  // ceil((num_experts + num_redundant_experts) / world_size): every rank the same, so the fleet
  // may hold a few more redundant slots than asked for.
  int slots_per_rank(int world_size) const;
  // A new generation's placement: Placement::round_robin over world_size ranks.
  Result<Placement> initial_placement(int world_size) const;
};

// From a parsed config.json: num_hidden_layers and num_experts (or num_local_experts, the name
// recent transformers versions write), positive integers. kInvalidArgument naming `source` and
// the field otherwise.
Result<ExpertLayout> parse_expert_layout(const nlohmann::json& config, std::string_view source,
                                         int num_redundant_experts);
// Reads <model_dir>/config.json; kNotFound / kInvalidArgument with the path when it is missing
// or unusable.
Result<ExpertLayout> read_expert_layout(const std::string& model_dir, int num_redundant_experts);

}  // namespace eep::coordinator
