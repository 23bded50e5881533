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
  // Layers are planned independently, on this many threads (0 = one per core). The result does
  // not depend on it.
  int num_threads = 1;
};

// The placement for `load` (every layer planned independently). Every logical expert keeps at
// least one replica; every rank gets exactly slots_per_rank slots, listed in increasing logical
// id. kInvalidArgument for an empty or ragged matrix, negative or non-finite loads, too few
// slots, or node/group counts that do not divide the ranks/experts.
Result<Placement> rebalance_experts(const LoadMatrix& load, const EplbConfig& config);
Result<Placement> rebalance_experts(const ExpertTokenCounts& load, const EplbConfig& config);

// How far a plan from the current placement may trade balance for fewer moved experts
// (docs/eplb.md, "Plans that move little").
struct MigrationOptions {
  // Per layer, the balancedness the plan may give up against a plan from scratch on the same load
  // to change fewer slots (0: the plan is as balanced as one from scratch).
  double balance_slack = 0.01;
  // At most this fraction of a layer's slots change expert (1: no cap). Under a cap, a layer may
  // end less balanced than balance_slack allows.
  double max_moved_fraction = 1.0;
};

// A plan from the current placement, and what it costs and gains.
struct MigrationPlan {
  Placement placement;
  std::vector<int> slots_changed_per_layer;  // slots whose logical expert changes
  int64_t slots_changed = 0;                 // over all layers
  std::vector<double> current_per_layer;     // balancedness of `current` on the load
  std::vector<double> predicted_per_layer;   // of `placement` on the load
  std::vector<double> scratch_per_layer;     // of a plan from scratch on the load
  double current_balancedness = 1.0;         // means over layers of the three above
  double predicted_balancedness = 1.0;
  double scratch_balancedness = 1.0;
  int num_layers_kept = 0;  // layers that change nothing (already within the slack)
  // Layers where the search from the current placement fell short of the slack and the plan
  // from scratch, its ranks matched to the current ones, was taken instead.
  int num_layers_from_scratch = 0;
};

// Physical slots whose logical expert differs between two placements of the same shape.
int64_t num_changed_slots(const Placement& from, const Placement& to);

// A placement for `load` that starts from `current` (the same layers, experts, ranks and slots
// per rank as `config`; kInvalidArgument otherwise): per layer, replicas are swapped between
// ranks or turned into replicas of other experts one at a time, each time the change that lowers
// the heaviest rank the most, until the layer is within options.balance_slack of a plan from
// scratch. When that search stalls, the plan from scratch is used with its ranks (and nodes)
// matched to the current ones to keep the most experts in place, and experts that stay on a rank
// keep their slot. The same input gives the same output. With the load the current placement
// was planned from, nothing changes.
Result<MigrationPlan> rebalance_experts_from(const LoadMatrix& load, const EplbConfig& config,
                                             const Placement& current,
                                             const MigrationOptions& options = {});
Result<MigrationPlan> rebalance_experts_from(const ExpertTokenCounts& load,
                                             const EplbConfig& config, const Placement& current,
                                             const MigrationOptions& options = {});

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
