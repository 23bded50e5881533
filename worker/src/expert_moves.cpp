#include "eep/worker/expert_moves.h"

#include <numeric>
#include <string>

namespace eep::worker {

size_t ExpertMoveSchedule::num_send_bytes() const {
  return std::accumulate(send_bytes.begin(), send_bytes.end(), size_t{0});
}

size_t ExpertMoveSchedule::num_recv_bytes() const {
  return std::accumulate(recv_bytes.begin(), recv_bytes.end(), size_t{0});
}

ExpertMoveSchedule schedule_expert_moves(const std::vector<ExpertMove>& moves, int rank,
                                         int num_ranks, int slots_per_rank, size_t expert_bytes) {
  EEP_CHECK(rank >= 0 && rank < num_ranks && slots_per_rank > 0);
  ExpertMoveSchedule schedule;
  schedule.send_bytes.assign(num_ranks, 0);
  schedule.recv_bytes.assign(num_ranks, 0);
  for (int peer = 0; peer < num_ranks; ++peer) {
    for (const ExpertMove& move : moves) {
      const int src_rank = move.src_slot / slots_per_rank;
      const int dst_rank = move.dst_slot / slots_per_rank;
      EEP_CHECK(src_rank < num_ranks && dst_rank < num_ranks);
      if (peer == rank) {
        if (src_rank == rank && dst_rank == rank) schedule.local.push_back(move);
        continue;
      }
      if (src_rank == rank && dst_rank == peer) {
        schedule.sends.push_back(move);
        schedule.send_bytes[peer] += expert_bytes;
      } else if (src_rank == peer && dst_rank == rank) {
        schedule.recvs.push_back(move);
        schedule.recv_bytes[peer] += expert_bytes;
      }
    }
  }
  return schedule;
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
