#include "eep/worker/weight_transfer.h"

#include <algorithm>
#include <string>

namespace eep::worker {
namespace {

// Appends the copies of one layer's expert slots, and this rank's checkpoint slots.
void plan_layer(const Placement& previous, const Placement& next, int layer,
                const std::vector<int>& previous_rank_of, size_t expert_bytes, int rank,
                std::vector<PieceCopy>* copies, std::vector<CheckpointSlot>* from_checkpoint) {
  const int num_ranks = next.num_ranks;
  const int width = std::max(previous.slots_per_rank, next.slots_per_rank);
  std::vector<int> from_row(static_cast<size_t>(num_ranks) * width, -1);
  std::vector<int> to_row(from_row.size(), -1);
  std::vector<bool> held(next.num_logical_experts, false);
  for (int r = 0; r < num_ranks; ++r) {
    for (int k = 0; k < next.slots_per_rank; ++k) {
      to_row[r * width + k] = next.phy2log[layer][r * next.slots_per_rank + k];
    }
    const int old = previous_rank_of[r];
    if (old < 0) continue;
    for (int k = 0; k < previous.slots_per_rank; ++k) {
      const int expert = previous.phy2log[layer][old * previous.slots_per_rank + k];
      from_row[r * width + k] = expert;
      held[expert] = true;
    }
  }
  // An expert that only leaving ranks held comes from the checkpoint.
  for (size_t slot = 0; slot < to_row.size(); ++slot) {
    const int expert = to_row[slot];
    if (expert < 0 || held[expert]) continue;
    const int r = static_cast<int>(slot) / width;
    if (r == rank) from_checkpoint->push_back({layer, static_cast<int>(slot) % width, expert});
    to_row[slot] = -1;
  }
  std::vector<ExpertMove> moves = plan_expert_moves(from_row, to_row, width);
  // A slot whose expert stays copies from itself (g+1's weights are a new buffer).
  for (size_t slot = 0; slot < to_row.size(); ++slot) {
    if (to_row[slot] >= 0 && to_row[slot] == from_row[slot]) {
      moves.push_back({static_cast<int>(slot), static_cast<int>(slot)});
    }
  }
  std::sort(moves.begin(), moves.end(),
            [](const ExpertMove& a, const ExpertMove& b) { return a.dst_slot < b.dst_slot; });
  for (const ExpertMove& move : moves) {
    copies->push_back({move.src_slot / width,
                       {layer, move.src_slot % width},
                       move.dst_slot / width,
                       {layer, move.dst_slot % width},
                       expert_bytes});
  }
}

Status check_fits(const Placement& previous, const Placement& next, size_t num_members) {
  EEP_RETURN_IF_ERROR(previous.validate());
  if (static_cast<size_t>(previous.num_ranks) != num_members) {
    return error(ErrorCode::kInvalidArgument, "the previous generation has " +
                                                  std::to_string(num_members) +
                                                  " members and a placement of " +
                                                  std::to_string(previous.num_ranks) + " ranks");
  }
  if (previous.num_layers != next.num_layers ||
      previous.num_logical_experts != next.num_logical_experts) {
    return error(ErrorCode::kInvalidArgument,
                 "the previous generation's placement has " + std::to_string(previous.num_layers) +
                     " layers of " + std::to_string(previous.num_logical_experts) +
                     " experts, the next " + std::to_string(next.num_layers) + " of " +
                     std::to_string(next.num_logical_experts));
  }
  return Status::ok();
}

}  // namespace

Result<std::optional<WeightTransferPlan>> plan_weight_transfer(
    const protocol::Assign& assign, const Placement& next, const std::vector<size_t>& dense_bytes,
    size_t expert_bytes, size_t chunk_bytes) {
  if (assign.previous_members.empty() || !assign.previous_placement)
    return std::optional<WeightTransferPlan>();
  const Placement& previous = *assign.previous_placement;
  EEP_RETURN_IF_ERROR(check_fits(previous, next, assign.previous_members.size()));
  WeightTransferPlan plan;
  plan.rank = assign.rank;
  std::vector<int> previous_rank_of(assign.members.size(), -1);
  for (size_t r = 0; r < assign.members.size(); ++r) {
    const auto it = std::find(assign.previous_members.begin(), assign.previous_members.end(),
                              assign.members[r]);
    if (it == assign.previous_members.end()) continue;
    previous_rank_of[r] = static_cast<int>(it - assign.previous_members.begin());
    plan.staying.push_back(static_cast<int>(r));
  }
  if (plan.staying.empty()) return std::optional<WeightTransferPlan>();
  plan.previous_rank = previous_rank_of[assign.rank];

  std::vector<PieceCopy> copies;
  const int num_ranks = static_cast<int>(assign.members.size());
  for (size_t t = 0; t < dense_bytes.size(); ++t) {
    const WeightPiece piece{-1, static_cast<int>(t)};
    const int sender = plan.staying[t % plan.staying.size()];
    for (int r = 0; r < num_ranks; ++r) {
      copies.push_back({previous_rank_of[r] >= 0 ? r : sender, piece, r, piece, dense_bytes[t]});
    }
  }
  for (int layer = 0; layer < next.num_layers; ++layer) {
    plan_layer(previous, next, layer, previous_rank_of, expert_bytes, assign.rank, &copies,
               &plan.from_checkpoint);
  }
  plan.num_bytes_from_checkpoint = plan.from_checkpoint.size() * expert_bytes;

  plan.chunks.emplace_back();
  size_t chunk_size = 0;
  for (const PieceCopy& copy : copies) {
    if (!plan.chunks.back().empty() && chunk_size + copy.bytes > chunk_bytes) {
      plan.chunks.emplace_back();
      chunk_size = 0;
    }
    plan.chunks.back().push_back(copy);
    chunk_size += copy.bytes;
  }
  return std::optional<WeightTransferPlan>(std::move(plan));
}

ChunkSchedule schedule_chunk(const std::vector<PieceCopy>& chunk, int rank, int num_ranks) {
  ChunkSchedule schedule;
  schedule.send_bytes.assign(num_ranks, 0);
  schedule.recv_bytes.assign(num_ranks, 0);
  for (const PieceCopy& copy : chunk) {
    if (copy.src_rank == rank && copy.dst_rank == rank) {
      schedule.local.push_back(copy);
    } else if (copy.src_rank == rank) {
      schedule.sends.push_back(copy);
      schedule.send_bytes[copy.dst_rank] += copy.bytes;
    } else if (copy.dst_rank == rank) {
      schedule.recvs.push_back(copy);
      schedule.recv_bytes[copy.src_rank] += copy.bytes;
    }
  }
  std::stable_sort(schedule.sends.begin(), schedule.sends.end(),
                   [](const PieceCopy& a, const PieceCopy& b) { return a.dst_rank < b.dst_rank; });
  std::stable_sort(schedule.recvs.begin(), schedule.recvs.end(),
                   [](const PieceCopy& a, const PieceCopy& b) { return a.src_rank < b.src_rank; });
  return schedule;
}

}  // namespace eep::worker
