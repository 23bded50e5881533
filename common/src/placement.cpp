#include "eep/common/placement.h"

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace eep {

int Placement::min_slots_per_rank(int num_logical_experts, int num_ranks) {
  return (num_logical_experts + num_ranks - 1) / num_ranks;
}

Result<Placement> Placement::round_robin(int num_layers, int num_logical_experts, int num_ranks,
                                         int slots_per_rank) {
  Placement placement;
  placement.num_layers = num_layers;
  placement.num_logical_experts = num_logical_experts;
  placement.num_ranks = num_ranks;
  placement.slots_per_rank = slots_per_rank;
  if (num_ranks > 0 && slots_per_rank > 0 && num_logical_experts > 0 && num_layers >= 0) {
    std::vector<int> layer(placement.num_slots());
    for (int slot = 0; slot < placement.num_slots(); ++slot)
      layer[slot] = slot % num_logical_experts;
    placement.phy2log.assign(num_layers, layer);
  }
  EEP_RETURN_IF_ERROR(placement.validate());
  return placement;
}

Status Placement::validate() const {
  if (num_layers < 0 || num_logical_experts < 1 || num_ranks < 1 || slots_per_rank < 1) {
    return error(ErrorCode::kInvalidArgument,
                 "placement needs >= 1 expert, rank and slot per rank (got " +
                     std::to_string(num_logical_experts) + " experts, " +
                     std::to_string(num_ranks) + " ranks, " + std::to_string(slots_per_rank) +
                     " slots per rank)");
  }
  if (num_slots() < num_logical_experts) {
    return error(ErrorCode::kInvalidArgument,
                 std::to_string(num_ranks) + " ranks x " + std::to_string(slots_per_rank) +
                     " slots cannot hold " + std::to_string(num_logical_experts) +
                     " experts; use at least " +
                     std::to_string(min_slots_per_rank(num_logical_experts, num_ranks)) +
                     " slots per rank");
  }
  if (static_cast<int>(phy2log.size()) != num_layers) {
    return error(ErrorCode::kInvalidArgument, "placement has " + std::to_string(phy2log.size()) +
                                                  " layers, expected " +
                                                  std::to_string(num_layers));
  }
  for (int layer = 0; layer < num_layers; ++layer) {
    EEP_RETURN_IF_ERROR(validate_row(phy2log[layer], layer));
  }
  return Status::ok();
}

Status Placement::validate_row(const std::vector<int>& row, int layer_idx) const {
  const std::string where = "placement layer " + std::to_string(layer_idx);
  if (static_cast<int>(row.size()) != num_slots()) {
    return error(ErrorCode::kInvalidArgument, where + " has " + std::to_string(row.size()) +
                                                  " slots, expected " +
                                                  std::to_string(num_slots()));
  }
  std::vector<int> num_replicas(num_logical_experts, 0);
  for (int logical : row) {
    if (logical < 0 || logical >= num_logical_experts) {
      return error(ErrorCode::kInvalidArgument, where + " names expert " + std::to_string(logical) +
                                                    " of " + std::to_string(num_logical_experts));
    }
    ++num_replicas[logical];
  }
  for (int logical = 0; logical < num_logical_experts; ++logical) {
    if (num_replicas[logical] == 0) {
      return error(ErrorCode::kInvalidArgument,
                   where + " has no replica of expert " + std::to_string(logical));
    }
  }
  return Status::ok();
}

ReplicaTable::ReplicaTable(const Placement& placement) : slots_per_rank_(placement.slots_per_rank) {
  replicas_.resize(placement.num_layers);
  for (int layer = 0; layer < placement.num_layers; ++layer) {
    replicas_[layer].resize(placement.num_logical_experts);
    for (int slot = 0; slot < placement.num_slots(); ++slot) {
      replicas_[layer][placement.phy2log[layer][slot]].push_back(slot);
    }
  }
}

void ReplicaTable::set_layer(int layer, const std::vector<int>& row) {
  EEP_CHECK(layer >= 0 && layer < static_cast<int>(replicas_.size()));
  auto& experts = replicas_[layer];
  for (auto& slots : experts) slots.clear();
  for (int slot = 0; slot < static_cast<int>(row.size()); ++slot) {
    EEP_CHECK(row[slot] >= 0 && row[slot] < static_cast<int>(experts.size()));
    experts[row[slot]].push_back(slot);
  }
}

int ReplicaTable::choose(int layer, int logical, int src_rank, uint64_t token_key) const {
  const std::vector<int>& slots = replicas_[layer][logical];
  EEP_CHECK(!slots.empty());
  for (int slot : slots) {
    if (slot / slots_per_rank_ == src_rank) return slot;
  }
  return slots[token_key % slots.size()];
}

std::vector<ExpertMove> plan_expert_moves(const std::vector<int>& from_row,
                                          const std::vector<int>& to_row, int slots_per_rank) {
  EEP_CHECK(slots_per_rank > 0);
  EEP_CHECK(from_row.size() == to_row.size());
  const int num_slots = static_cast<int>(from_row.size());
  EEP_CHECK(num_slots % slots_per_rank == 0);
  // Holders of each expert in from_row, in slot order.
  int max_expert = -1;
  for (int logical : from_row) max_expert = std::max(max_expert, logical);
  for (int logical : to_row) max_expert = std::max(max_expert, logical);
  std::vector<std::vector<int>> holders(max_expert + 1);
  for (int slot = 0; slot < num_slots; ++slot) {
    if (from_row[slot] >= 0) holders[from_row[slot]].push_back(slot);
  }
  std::vector<int> num_remote_taken(max_expert + 1, 0);  // k per expert, for the round robin
  std::vector<ExpertMove> moves;
  for (int dst = 0; dst < num_slots; ++dst) {
    const int logical = to_row[dst];
    if (logical == from_row[dst] || logical < 0) continue;  // unchanged, or ends empty
    EEP_CHECK_MSG(!holders[logical].empty(), "expert move to slot "
                                                 << dst << ": no slot holds expert " << logical
                                                 << " before the move");
    const std::vector<int>& sources = holders[logical];
    const int dst_rank = dst / slots_per_rank;
    int src = -1;
    for (int slot : sources) {
      if (slot / slots_per_rank == dst_rank) {
        src = slot;
        break;
      }
    }
    if (src < 0) {
      const int k = num_remote_taken[logical]++;
      src = sources[k % static_cast<int>(sources.size())];
    }
    moves.push_back({src, dst});
  }
  return moves;
}

void to_json(nlohmann::json& j, const Placement& placement) {
  j = nlohmann::json{{"num_layers", placement.num_layers},
                     {"num_logical_experts", placement.num_logical_experts},
                     {"num_ranks", placement.num_ranks},
                     {"slots_per_rank", placement.slots_per_rank},
                     {"phy2log", placement.phy2log}};
}

namespace {

// nlohmann would wrap 4294967299 to 3: every integer of a placement is read whole and in range.
int read_int(const nlohmann::json& value, const char* key) {
  if (!value.is_number_integer()) {
    throw std::invalid_argument(std::string("placement field \"") + key + "\": must be an integer");
  }
  if (value.is_number_unsigned()
          ? value.get<uint64_t>() > INT32_MAX
          : value.get<int64_t>() < INT32_MIN || value.get<int64_t>() > INT32_MAX) {
    throw std::out_of_range(std::string("placement field \"") + key + "\": " + value.dump() +
                            " is out of range");
  }
  return value.get<int>();
}

}  // namespace

void from_json(const nlohmann::json& j, Placement& placement) {
  placement.num_layers = read_int(j.at("num_layers"), "num_layers");
  placement.num_logical_experts = read_int(j.at("num_logical_experts"), "num_logical_experts");
  placement.num_ranks = read_int(j.at("num_ranks"), "num_ranks");
  placement.slots_per_rank = read_int(j.at("slots_per_rank"), "slots_per_rank");
  const nlohmann::json& rows = j.at("phy2log");
  if (!rows.is_array()) throw std::invalid_argument("placement field \"phy2log\": not an array");
  placement.phy2log.assign(rows.size(), {});
  for (size_t layer = 0; layer < rows.size(); ++layer) {
    if (!rows[layer].is_array()) {
      throw std::invalid_argument("placement field \"phy2log\": a row is not an array");
    }
    for (const nlohmann::json& expert : rows[layer]) {
      placement.phy2log[layer].push_back(read_int(expert, "phy2log"));
    }
  }
}

}  // namespace eep
