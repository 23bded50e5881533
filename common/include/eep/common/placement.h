// Expert placement (DESIGN.md section 5): which logical expert each physical expert slot holds,
// per layer. Rank r owns slots [r * slots_per_rank, (r + 1) * slots_per_rank). A logical expert
// may have several replicas (redundant experts); every logical expert has at least one. Shared by
// the coordinator (EPLB planner, scaling) and the workers (which weights to hold, where to send
// tokens), and carried on the wire as JSON.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "eep/common/status.h"

namespace eep {

struct Placement {
  int num_layers = 0;
  int num_logical_experts = 0;
  int num_ranks = 0;
  int slots_per_rank = 0;
  // phy2log[layer][slot]: the logical expert held by physical slot `slot` of `layer`.
  std::vector<std::vector<int>> phy2log;

  // The same sizes and every slot holding the same expert.
  bool operator==(const Placement&) const = default;

  int num_slots() const { return num_ranks * slots_per_rank; }
  int rank_of_slot(int slot) const { return slot / slots_per_rank; }
  int local_idx_of_slot(int slot) const { return slot % slots_per_rank; }
  int logical_of(int layer, int slot) const { return phy2log[layer][slot]; }

  // Slot s holds logical expert s % num_logical_experts: experts spread round-robin over ranks,
  // the surplus slots replicating experts 0, 1, ... . Fails when the slots cannot hold every
  // expert once.
  static Result<Placement> round_robin(int num_layers, int num_logical_experts, int num_ranks,
                                       int slots_per_rank);
  // The fewest slots per rank that hold every expert once over num_ranks ranks.
  static int min_slots_per_rank(int num_logical_experts, int num_ranks);

  // Sizes consistent, every id in range, every logical expert replicated at least once.
  Status validate() const;
  // The same checks for one layer's row (num_slots() ids) against this placement's sizes.
  Status validate_row(const std::vector<int>& row, int layer_idx) const;
};

// Replicas of each logical expert per layer, in slot order: the inverse of phy2log.
class ReplicaTable {
 public:
  explicit ReplicaTable(const Placement& placement);
  // Rebuilds one layer's replicas from its new phy2log row (a valid row of the same sizes).
  void set_layer(int layer, const std::vector<int>& row);
  // The physical slots holding `logical` in `layer`, in increasing slot order (never empty for
  // a valid placement).
  const std::vector<int>& replicas(int layer, int logical) const {
    return replicas_[layer][logical];
  }
  // The replica that a token from `src_rank` uses: one on src_rank itself when there is one (no
  // traffic), else one chosen by `token_key` so that load spreads evenly over the replicas.
  // Deterministic: the same arguments always give the same slot.
  int choose(int layer, int logical, int src_rank, uint64_t token_key) const;

 private:
  int slots_per_rank_;
  std::vector<std::vector<std::vector<int>>> replicas_;  // [layer][logical] -> slots
};

// One expert copy of a placement change: physical slot dst_slot receives the expert that slot
// src_slot holds before the change (src_slot == dst_slot never occurs).
struct ExpertMove {
  int src_slot = 0;
  int dst_slot = 0;
};

// Pairs every physical slot whose logical expert changes from `from_row` to `to_row` (one
// layer's phy2log before and after, same size, a multiple of slots_per_rank) with a source slot
// that holds its new expert in from_row: one on the destination's own rank when there is one (a
// local copy, the lowest such slot), else a replica chosen round-robin: the k-th destination
// needing expert e from another rank takes e's (k mod n)-th replica in slot order, so the sends
// spread over the n replicas. Slots whose expert does not change move nothing. The result is
// ordered by dst_slot and depends only on the arguments, so every rank computes the same pairs.
// A negative id in from_row is an empty slot (holds no expert, never a source: e.g. the slots of
// a rank joining at scale-up); a negative id in to_row is a slot that ends empty (moves nothing:
// e.g. slots a generation with fewer slots per rank does not have). Precondition (EEP_CHECK):
// every id >= 0 of to_row occurs in from_row, which holds when from_row holds every logical expert
// (a valid placement's row) and to_row's ids are in range; callers validate a row that came from
// elsewhere first.
std::vector<ExpertMove> plan_expert_moves(const std::vector<int>& from_row,
                                          const std::vector<int>& to_row, int slots_per_rank);

void to_json(nlohmann::json& j, const Placement& placement);
void from_json(const nlohmann::json& j, Placement& placement);

}  // namespace eep
