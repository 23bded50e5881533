// Weights from peers at a scale (DESIGN.md section 6, TRANSFER_WEIGHTS; docs/weight_transfer.md):
// the part both backends share. Every worker taking part computes, from its Assign alone, the
// same plan: which rank sends which piece of its installed (generation g) weights to which piece
// of which rank's g+1 weights, cut into chunks of bounded size; and which expert slots no rank
// of g in the transfer holds (read from the checkpoint instead). A chunk is one all_to_all_v
// over the transfer's group that each of its ranks runs: the ranks of g between two of their
// steps, the new ranks on their helper thread.
//
// The group: g+1's EP group when g+1 has new ranks (a scale-up); g's EP group when every member
// of g+1 was in g (a scale-down), so that the leaving ranks send what only they hold (they get
// an Assign with rank -1 for this). A recovery (Assign.recovery): g+1's EP group always, the
// survivors sending what they hold of g; the lost members' slots that no survivor holds come
// from the checkpoint, and every rank runs its chunks on its helper thread (no rank serves).
//
// Pairing, one function for sender and receiver:
// - non-expert tensor t goes to each new rank from staying rank number t mod (number of staying
//   ranks), so the senders share the work; a staying rank copies its own;
// - expert slots: plan_expert_moves (eep/common/placement.h, the one EPLB uses) on one layer's
//   rows laid over the group's ranks with max(slots of g, slots of g+1) slots each: the "from" row
//   holds each rank's slots of g (new ranks' slots empty), the "to" row its slots of g+1 (leaving
//   ranks' empty); a slot whose expert stays where it is copies from itself.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "eep/common/placement.h"
#include "eep/common/protocol.h"
#include "eep/common/status.h"
#include "eep/worker/comm/process_group.h"

namespace eep::worker {

// A piece of a generation's weights that travels whole.
struct WeightPiece {
  int layer = -1;  // -1: non-expert tensor `index` (Backend::dense_piece_bytes' order)
  int index = 0;   // the tensor, or the local slot of `layer`
  bool operator==(const WeightPiece&) const = default;
};

// `src` of rank src_rank's installed weights (g) into `dst` of rank dst_rank's g+1 weights. Ranks
// are ranks of the transfer's group; src_rank == dst_rank is a local copy (nothing travels).
struct PieceCopy {
  int src_rank = 0;
  WeightPiece src;
  int dst_rank = 0;
  WeightPiece dst;
  size_t bytes = 0;
  bool operator==(const PieceCopy&) const = default;
};

// A slot of this rank's g+1 weights that no rank of g in the group holds: read from the
// checkpoint.
struct CheckpointSlot {
  int layer = 0;
  int local_slot = 0;
  int expert = 0;
  bool operator==(const CheckpointSlot&) const = default;
};

struct WeightTransferPlan {
  bool recovery = false;                        // g lost members; nobody serves while it runs
  bool over_previous_group = false;             // the chunks run over g's EP group (else g+1's)
  int num_ranks = 0;                            // of that group
  int rank = 0;                                 // this worker's rank in it
  int previous_rank = -1;                       // this worker in g; -1 for a new rank
  int next_rank = -1;                           // this worker in g+1; -1 for a leaving rank
  std::vector<int> staying;                     // group ranks in g and g+1, ascending
  std::vector<std::vector<PieceCopy>> chunks;   // at least one; every member runs every chunk
  std::vector<CheckpointSlot> from_checkpoint;  // this rank's
  uint64_t num_bytes_from_checkpoint = 0;       // this rank's

  bool is_new_rank() const { return previous_rank < 0; }
  bool is_leaving_rank() const { return next_rank < 0; }
  // This rank serves g and runs its chunks between its steps (engine thread); otherwise on its
  // helper thread, where it builds g+1.
  bool sends_between_steps() const { return !recovery && !is_new_rank(); }
};

// The plan of worker `self` (a member of g+1, or of g only) for `assign` (its placement is
// `next`), or nullopt when there is nothing to take from peers: the first generation (no previous
// generation in the Assign) or no member of g+1 was in g. dense_bytes: each non-expert tensor's
// size; expert_bytes: one expert's. In a chunk each rank sends, copies or receives at most
// chunk_bytes, unless it takes part in only one copy of the chunk (a larger piece).
// kInvalidArgument when the previous generation does not fit (members vs. placement ranks, layers
// or experts differ from `next`) or `self` is in neither.
Result<std::optional<WeightTransferPlan>> plan_weight_transfer(
    const protocol::Assign& assign, const std::string& self, const Placement& next,
    const std::vector<size_t>& dense_bytes, size_t expert_bytes, size_t chunk_bytes);

// One rank's share of a chunk: of a weight transfer, or of a layer's expert moves (EPLB,
// expert_moves.h).
struct ChunkSchedule {
  std::vector<PieceCopy> sends;    // src this rank, dst another: by dst rank, plan order within
  std::vector<PieceCopy> recvs;    // dst this rank, src another: by src rank, plan order within
  std::vector<PieceCopy> local;    // both this rank
  std::vector<size_t> send_bytes;  // per peer
  std::vector<size_t> recv_bytes;
};
ChunkSchedule schedule_chunk(const std::vector<PieceCopy>& chunk, int rank, int num_ranks);

// How one rank's pieces are read and written in an exchange (the backend's memory and copies).
struct PieceIo {
  // Memory of at least `bytes` the group can send from and receive into.
  std::function<Result<std::byte*>(size_t bytes)> staging;
  std::function<Status(const WeightPiece& src, std::byte* out)> pack;
  std::function<Status(const WeightPiece& dst, const std::byte* in)> unpack;
  // Everything pack and unpack started has completed.
  std::function<Status()> finish;
};

// One exchange of pieces on this rank, the one mechanism of weight transfers and expert moves:
// its sends and local copies packed into staging ([sends | local | received]: every source is
// packed before any piece is written, so a piece may be both), one all_to_all_v over `group`
// (null when every copy is local), the received and local pieces unpacked. Returns the bytes
// received from peers. A failed exchange breaks the group (process_group.h).
Result<uint64_t> exchange_pieces(const ChunkSchedule& schedule, ProcessGroup* group,
                                 const PieceIo& io);

}  // namespace eep::worker
