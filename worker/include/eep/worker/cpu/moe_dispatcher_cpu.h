// The expert-parallel MoE exchange (DESIGN.md section 5): each token's top-k logical experts are
// mapped to physical replicas (ReplicaTable), the token rows are dispatched to the ranks holding
// those replicas by all-to-all, computed there by the slot's expert, returned by a second
// all-to-all, and combined with the router weights. With no group (one rank) the same code runs
// without the exchange, so EP=1 and EP=N share every line but the transport.
//
// Determinism: a token's output is sum_j w[t][j] * expert_j(x[t]) accumulated in j order, and
// each expert row is computed independently of the other rows of its batch, so the result does
// not depend on how tokens are spread over ranks or replicas.
//
// One thread (the engine loop) calls it; every rank of the group calls forward() for the same
// layer in the same order, also with zero tokens (a dummy step).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "eep/common/placement.h"
#include "eep/common/status.h"
#include "eep/worker/comm/process_group.h"

namespace eep::worker {

// Computes y[n, hidden] = expert(x[n, hidden]) for the expert in this rank's local slot
// `local_slot_idx` of `layer_idx`.
using ExpertFn = std::function<void(int layer_idx, int local_slot_idx, const float* x,
                                    int64_t num_rows, float* y)>;

class MoeDispatcher {
 public:
  // group may be null only when placement.num_ranks == 1.
  MoeDispatcher(Placement placement, int rank, ProcessGroup* group);

  // out[t] = sum_j topk_weights[t][j] * expert_{topk_ids[t][j]}(x[t]) for t < num_tokens.
  Status forward(int layer_idx, const float* x, const int32_t* topk_ids, const float* topk_weights,
                 int64_t num_tokens, int top_k, int hidden, const ExpertFn& compute, float* out);

  const Placement& placement() const { return placement_; }
  int rank() const { return rank_; }
  // Layer `layer_idx` routes by `row` (a valid phy2log row of the placement's sizes, else
  // kInvalidArgument and nothing changes) from the next forward on; the other layers keep theirs.
  // The caller has put the experts of `row` into this rank's slots (expert moves).
  Status set_layer_placement(int layer_idx, std::vector<int> row);
  // Tokens this rank sent to each physical slot since the last take: [layer][slot] (for EPLB).
  std::vector<std::vector<int64_t>> take_slot_counts();

 private:
  Placement placement_;
  ReplicaTable replicas_;
  int rank_;
  ProcessGroup* group_;
  std::vector<std::vector<int64_t>> slot_counts_;
  // Scratch reused across calls.
  std::vector<float> send_rows_;
  std::vector<float> recv_rows_;
  std::vector<float> expert_in_;
  std::vector<float> expert_out_;
};

}  // namespace eep::worker
