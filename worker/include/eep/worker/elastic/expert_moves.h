// Moving one layer's experts to a new placement (EPLB, DESIGN.md section 8): the part both
// backends share. plan_expert_moves (eep/common/placement.h) pairs every changed slot with a
// source slot; each pair is a copy of an expert piece (weight_transfer.h), and the layer's copies
// are one exchange_pieces, the mechanism that weight transfers at a scale use too: every rank
// derives its share without any exchange, every source is packed before any slot is written (a
// slot may be both), and the per-peer sizes of the all_to_all_v agree pairwise.
#pragma once

#include <cstddef>
#include <vector>

#include "eep/common/placement.h"
#include "eep/common/status.h"
#include "eep/worker/comm/process_group.h"
#include "eep/worker/elastic/weight_transfer.h"

namespace eep::worker {

// The copies of `moves` (plan_expert_moves' result for a placement of slots_per_rank slots per
// rank): expert pieces of `layer`, ranks of the placement; expert_bytes: one expert's piece.
std::vector<PieceCopy> expert_move_copies(const std::vector<ExpertMove>& moves, int layer,
                                          int slots_per_rank, size_t expert_bytes);

// This rank's part of moving layer `layer_idx` from `current` to `new_row`: the checks below,
// then the layer's copies as one exchange_pieces over `group` through `io` (its pack reads and
// its unpack writes this rank's installed expert slots). Returns the bytes received from peers.
// The caller then switches the layer's replica tables. A failed exchange may leave the layer half
// moved (the generation is rebuilt).
Result<uint64_t> exchange_layer_experts(const Placement& current, int rank, int layer_idx,
                                        const std::vector<int>& new_row, ProcessGroup* group,
                                        size_t expert_bytes, const PieceIo& io);

// The checks both backends run before a move touches anything (kInvalidArgument): layer_idx in
// range, new_row a valid row of `current`'s sizes, and `group` the placement's group for `rank`
// (null only at one rank). Every rank gets the same row, so every rank fails alike.
Status check_expert_move(const Placement& current, int layer_idx, const std::vector<int>& new_row,
                         int rank, const ProcessGroup* group);

}  // namespace eep::worker
