// Expert load balancing, the planning half (DESIGN.md section 8, docs/eplb.md): from the tokens
// each logical expert received per layer, a Placement that replicates the heaviest experts into
// the redundant slots and packs the physical experts onto ranks so that the busiest rank carries
// as little as possible. Pure functions: no I/O, deterministic (ties go to the lower index), safe
// to call from any thread.
#pragma once

#include <cstdint>
#include <vector>

#include "eep/common/placement.h"
#include "eep/common/status.h"

namespace eep::coordinator {

// load[layer][logical_expert]: tokens routed to that expert (any non-negative unit).
using LoadMatrix = std::vector<std::vector<double>>;
using ExpertTokenCounts = std::vector<std::vector<int64_t>>;

struct EplbConfig {
  int num_ranks = 0;
  int slots_per_rank = 0;  // num_ranks * slots_per_rank >= num_logical_experts
  // Hierarchical policy (DeepSeek's rebalance_experts_hierarchical): ranks
  // [n * num_ranks / num_nodes, (n + 1) * num_ranks / num_nodes) form node n; the experts are cut
  // into num_groups groups of consecutive ids, whole groups are packed onto nodes, and experts are
  // replicated only within their node, so tokens of one group stay on one host. When num_groups
  // is not a multiple of num_nodes (a model without groups on several hosts) the global policy is
  // used, as eplb.py does. num_nodes = num_groups = 1 is the global policy.
  int num_nodes = 1;
  int num_groups = 1;
};

// The placement for `load` (every layer planned independently). Every logical expert keeps at
// least one replica; every rank gets exactly slots_per_rank slots, listed in increasing logical
// id. kInvalidArgument for an empty or ragged matrix, negative or non-finite loads, too few
// slots, or node/group counts that do not divide the ranks/experts.
Result<Placement> rebalance_experts(const LoadMatrix& load, const EplbConfig& config);
Result<Placement> rebalance_experts(const ExpertTokenCounts& load, const EplbConfig& config);

struct Balancedness {
  // Per layer: mean over max of the per-rank loads, where a logical expert's load is split evenly
  // among its replicas. 1 = perfectly balanced; a layer with no load counts as 1.
  std::vector<double> per_layer;
  double mean = 1.0;  // over layers
};

// kInvalidArgument when the placement is invalid or its shape does not match `load`.
Result<Balancedness> balancedness(const LoadMatrix& load, const Placement& placement);
Result<Balancedness> balancedness(const ExpertTokenCounts& load, const Placement& placement);

}  // namespace eep::coordinator
