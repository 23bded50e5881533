// The planner's pieces shared by eplb.cpp (plans from scratch) and eplb_migration.cpp (plans from
// the current placement); not part of the library's interface.
#pragma once

#include <functional>
#include <vector>

#include "eep/coordinator/eplb.h"

namespace eep::coordinator::eplb_internal {

// A validated EplbConfig against its load: the policy actually used (a group count that is not a
// multiple of the node count falls back to the global policy, num_nodes = num_groups = 1).
struct LayerShape {
  int num_experts = 0;
  int num_ranks = 0;
  int slots_per_rank = 0;
  int num_nodes = 1;
  int num_groups = 1;
  int ranks_per_node = 0;
  int group_size() const { return num_experts / num_groups; }
  int node_of_rank(int rank) const { return rank / ranks_per_node; }
};

// kInvalidArgument with what to change, for every input rebalance_experts refuses.
Result<LayerShape> check_input(const LoadMatrix& load, const EplbConfig& config);

// One layer's phy2log planned from its load alone (docs/eplb.md, "Algorithm"); within a rank,
// slots in increasing logical id.
std::vector<int> plan_layer_from_scratch(const std::vector<double>& layer_load,
                                         const LayerShape& shape);

// Calls plan(layer) for every layer on num_threads threads (0 = one per core, never more than
// the layers); returns when all are done. plan must write only its own layer's outputs.
void for_each_layer(int num_layers, int num_threads, const std::function<void(int)>& plan);

}  // namespace eep::coordinator::eplb_internal
