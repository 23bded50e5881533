// Moving one layer's experts to a new placement (EPLB, DESIGN.md section 8; scale-up and
// scale-down reuse it): the part both backends share. plan_expert_moves (eep/common/placement.h)
// pairs every changed slot with a source slot; from those pairs each rank derives, without any
// exchange, what it packs for which peer and what it unpacks from which peer, so the per-peer
// sizes of the all_to_all_v that carries the experts agree pairwise on every rank.
//
// The backends then: pack every source expert of this rank (sends, then local copies) into one
// send buffer, run the all_to_all_v (skipped without a group), write the received and the local
// experts into their destination slots, and switch the layer's replica tables. Every source is
// packed before any destination is written, so a slot may be both.
#pragma once

#include <cstddef>
#include <vector>

#include "eep/common/placement.h"
#include "eep/common/status.h"
#include "eep/worker/process_group.h"

namespace eep::worker {

// One rank's share of a layer's moves.
struct ExpertMoveSchedule {
  // Source on this rank, destination on another: grouped by destination rank (ascending), plan
  // order within a rank. The send buffer holds their experts in this order, one block per peer.
  std::vector<ExpertMove> sends;
  // Destination on this rank, source on another: grouped by source rank, plan order within. The
  // receive buffer holds their experts in this order (what each peer's `sends` put there).
  std::vector<ExpertMove> recvs;
  // Source and destination both on this rank: packed after the sends in the send buffer and
  // unpacked from there; nothing travels.
  std::vector<ExpertMove> local;
  // all_to_all_v sizes per peer (0 for this rank: its copies are `local`).
  std::vector<size_t> send_bytes;
  std::vector<size_t> recv_bytes;

  size_t num_send_bytes() const;  // sum of send_bytes
  size_t num_recv_bytes() const;  // sum of recv_bytes
};

// This rank's share of `moves` (plan_expert_moves' result for a placement of num_ranks ranks
// and slots_per_rank slots per rank); expert_bytes: one expert's packed size.
ExpertMoveSchedule schedule_expert_moves(const std::vector<ExpertMove>& moves, int rank,
                                         int num_ranks, int slots_per_rank, size_t expert_bytes);

// The checks both backends run before a move touches anything (kInvalidArgument): layer_idx in
// range, new_row a valid row of `current`'s sizes, and `group` the placement's group for `rank`
// (null only at one rank). Every rank gets the same row, so every rank fails alike.
Status check_expert_move(const Placement& current, int layer_idx, const std::vector<int>& new_row,
                         int rank, const ProcessGroup* group);

}  // namespace eep::worker
