#include "eep/worker/elastic/expert_moves.h"

#include <string>

namespace eep::worker {

std::vector<PieceCopy> expert_move_copies(const std::vector<ExpertMove>& moves, int layer,
                                          int slots_per_rank, size_t expert_bytes) {
  EEP_CHECK(slots_per_rank > 0);
  std::vector<PieceCopy> copies;
  copies.reserve(moves.size());
  for (const ExpertMove& move : moves) {
    copies.push_back(PieceCopy{.src_rank = move.src_slot / slots_per_rank,
                               .src = {layer, move.src_slot % slots_per_rank},
                               .dst_rank = move.dst_slot / slots_per_rank,
                               .dst = {layer, move.dst_slot % slots_per_rank},
                               .bytes = expert_bytes});
  }
  return copies;
}

Result<uint64_t> exchange_layer_experts(const Placement& current, int rank, int layer_idx,
                                        const std::vector<int>& new_row, ProcessGroup* group,
                                        size_t expert_bytes, const PieceIo& io) {
  EEP_RETURN_IF_ERROR(check_expert_move(current, layer_idx, new_row, rank, group));
  const int slots_per_rank = current.slots_per_rank;
  const std::vector<ExpertMove> moves =
      plan_expert_moves(current.phy2log[layer_idx], new_row, slots_per_rank);
  const ChunkSchedule schedule = schedule_chunk(
      expert_move_copies(moves, layer_idx, slots_per_rank, expert_bytes), rank, current.num_ranks);
  return exchange_pieces(schedule, group, io);
}

Status check_expert_move(const Placement& current, int layer_idx, const std::vector<int>& new_row,
                         int rank, const ProcessGroup* group) {
  if (layer_idx < 0 || layer_idx >= current.num_layers) {
    return error(ErrorCode::kInvalidArgument, "expert move: layer " + std::to_string(layer_idx) +
                                                  " outside the model's " +
                                                  std::to_string(current.num_layers) + " layers");
  }
  Status valid = current.validate_row(new_row, layer_idx);
  if (!valid.is_ok()) {
    return error(ErrorCode::kInvalidArgument, "expert move: " + valid.message());
  }
  const bool group_fits = group == nullptr
                              ? current.num_ranks == 1
                              : group->size() == current.num_ranks && group->rank() == rank;
  if (!group_fits) {
    return error(ErrorCode::kInvalidArgument,
                 "expert move: the EP group (" +
                     (group == nullptr ? std::string("none")
                                       : "rank " + std::to_string(group->rank()) + " of " +
                                             std::to_string(group->size())) +
                     ") does not match the placement (rank " + std::to_string(rank) + " of " +
                     std::to_string(current.num_ranks) + ")");
  }
  return Status::ok();
}

}  // namespace eep::worker
