#include "eep/worker/elastic/weight_transfer.h"

#include <algorithm>
#include <numeric>
#include <string>

namespace eep::worker {
namespace {

// The group's ranks as ranks of g and of g+1 (-1: not in it).
struct GroupRanks {
  std::vector<int> previous;
  std::vector<int> next;
};

// Appends the copies of one layer's expert slots, and the checkpoint slots of group rank `rank`.
void plan_layer(const Placement& previous, const Placement& next, int layer,
                const GroupRanks& ranks, size_t expert_bytes, int rank,
                std::vector<PieceCopy>* copies, std::vector<CheckpointSlot>* from_checkpoint) {
  const int num_ranks = static_cast<int>(ranks.previous.size());
  const int width = std::max(previous.slots_per_rank, next.slots_per_rank);
  std::vector<int> from_row(static_cast<size_t>(num_ranks) * width, -1);
  std::vector<int> to_row(from_row.size(), -1);
  std::vector<bool> held(next.num_logical_experts, false);
  for (int u = 0; u < num_ranks; ++u) {
    if (const int r = ranks.next[u]; r >= 0) {
      for (int k = 0; k < next.slots_per_rank; ++k) {
        to_row[u * width + k] = next.phy2log[layer][r * next.slots_per_rank + k];
      }
    }
    if (const int old = ranks.previous[u]; old >= 0) {
      for (int k = 0; k < previous.slots_per_rank; ++k) {
        const int expert = previous.phy2log[layer][old * previous.slots_per_rank + k];
        from_row[u * width + k] = expert;
        held[expert] = true;
      }
    }
  }
  // An expert that no rank of g in the group held comes from the checkpoint.
  for (size_t slot = 0; slot < to_row.size(); ++slot) {
    const int expert = to_row[slot];
    if (expert < 0 || held[expert]) continue;
    if (static_cast<int>(slot) / width == rank) {
      from_checkpoint->push_back({layer, static_cast<int>(slot) % width, expert});
    }
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

int index_of(const std::vector<std::string>& ids, const std::string& id) {
  const auto it = std::find(ids.begin(), ids.end(), id);
  return it == ids.end() ? -1 : static_cast<int>(it - ids.begin());
}

}  // namespace

Result<std::optional<WeightTransferPlan>> plan_weight_transfer(
    const protocol::Assign& assign, const std::string& self, const Placement& next,
    const std::vector<size_t>& dense_bytes, size_t expert_bytes, size_t chunk_bytes) {
  if (assign.previous_members.empty() || !assign.previous_placement) {
    return std::optional<WeightTransferPlan>();
  }
  const Placement& previous = *assign.previous_placement;
  EEP_RETURN_IF_ERROR(check_fits(previous, next, assign.previous_members.size()));
  // g's EP group when g+1 has no new member (the leaving ranks can send), else g+1's. A
  // recovery's g is broken: its lost members send nothing, so the survivors send over g+1's.
  WeightTransferPlan plan;
  plan.recovery = assign.recovery;
  plan.over_previous_group =
      !assign.recovery &&
      std::all_of(assign.members.begin(), assign.members.end(), [&](const std::string& id) {
        return index_of(assign.previous_members, id) >= 0;
      });
  const std::vector<std::string>& group =
      plan.over_previous_group ? assign.previous_members : assign.members;
  plan.num_ranks = static_cast<int>(group.size());
  GroupRanks ranks;
  for (int u = 0; u < plan.num_ranks; ++u) {
    ranks.previous.push_back(index_of(assign.previous_members, group[u]));
    ranks.next.push_back(index_of(assign.members, group[u]));
    if (ranks.previous[u] >= 0 && ranks.next[u] >= 0) plan.staying.push_back(u);
  }
  if (plan.staying.empty()) return std::optional<WeightTransferPlan>();
  plan.rank = index_of(group, self);
  if (plan.rank < 0) {
    return error(ErrorCode::kInvalidArgument, "worker '" + self + "' is neither in generation " +
                                                  std::to_string(assign.generation) +
                                                  " nor in the one before it");
  }
  plan.previous_rank = ranks.previous[plan.rank];
  plan.next_rank = ranks.next[plan.rank];

  std::vector<PieceCopy> copies;
  for (size_t t = 0; t < dense_bytes.size(); ++t) {
    const WeightPiece piece{-1, static_cast<int>(t)};
    const int sender = plan.staying[t % plan.staying.size()];
    for (int u = 0; u < plan.num_ranks; ++u) {
      if (ranks.next[u] < 0) continue;
      copies.push_back({ranks.previous[u] >= 0 ? u : sender, piece, u, piece, dense_bytes[t]});
    }
  }
  for (int layer = 0; layer < next.num_layers; ++layer) {
    plan_layer(previous, next, layer, ranks, expert_bytes, plan.rank, &copies,
               &plan.from_checkpoint);
  }
  plan.num_bytes_from_checkpoint = plan.from_checkpoint.size() * expert_bytes;

  // A chunk holds, for every rank, at most chunk_bytes of copies it sends, copies or receives:
  // the ranks work in parallel, so the bound is per rank, not for the whole fleet.
  plan.chunks.emplace_back();
  std::vector<size_t> load(plan.num_ranks, 0);
  for (const PieceCopy& copy : copies) {
    const bool fits = load[copy.src_rank] + copy.bytes <= chunk_bytes &&
                      load[copy.dst_rank] + copy.bytes <= chunk_bytes;
    if (!plan.chunks.back().empty() && !fits) {
      plan.chunks.emplace_back();
      std::fill(load.begin(), load.end(), 0);
    }
    plan.chunks.back().push_back(copy);
    load[copy.src_rank] += copy.bytes;
    if (copy.dst_rank != copy.src_rank) load[copy.dst_rank] += copy.bytes;
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

Result<uint64_t> exchange_pieces(const ChunkSchedule& schedule, ProcessGroup* group,
                                 const PieceIo& io) {
  const size_t send_bytes =
      std::accumulate(schedule.send_bytes.begin(), schedule.send_bytes.end(), size_t{0});
  const size_t recv_bytes =
      std::accumulate(schedule.recv_bytes.begin(), schedule.recv_bytes.end(), size_t{0});
  size_t local_bytes = 0;
  for (const PieceCopy& copy : schedule.local) local_bytes += copy.bytes;
  EEP_ASSIGN_OR_RETURN(std::byte * staging, io.staging(send_bytes + local_bytes + recv_bytes));
  std::byte* packed = staging;
  for (const PieceCopy& copy : schedule.sends) {
    EEP_RETURN_IF_ERROR(io.pack(copy.src, packed));
    packed += copy.bytes;
  }
  EEP_CHECK(packed == staging + send_bytes);
  for (const PieceCopy& copy : schedule.local) {
    EEP_RETURN_IF_ERROR(io.pack(copy.src, packed));
    packed += copy.bytes;
  }
  std::byte* received = staging + send_bytes + local_bytes;
  if (group != nullptr) {
    EEP_RETURN_IF_ERROR(group->all_to_all_v(staging, schedule.send_bytes.data(), received,
                                            schedule.recv_bytes.data()));
  } else {
    EEP_CHECK(send_bytes == 0 && recv_bytes == 0);  // one rank: every copy is local
  }
  const std::byte* unpacked = received;
  for (const PieceCopy& copy : schedule.recvs) {
    EEP_RETURN_IF_ERROR(io.unpack(copy.dst, unpacked));
    unpacked += copy.bytes;
  }
  const std::byte* local = staging + send_bytes;
  for (const PieceCopy& copy : schedule.local) {
    EEP_RETURN_IF_ERROR(io.unpack(copy.dst, local));
    local += copy.bytes;
  }
  EEP_RETURN_IF_ERROR(io.finish());
  return static_cast<uint64_t>(recv_bytes);
}

}  // namespace eep::worker
