#include "eep/common/placement.h"

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
    if (static_cast<int>(phy2log[layer].size()) != num_slots()) {
      return error(ErrorCode::kInvalidArgument,
                   "placement layer " + std::to_string(layer) + " has " +
                       std::to_string(phy2log[layer].size()) + " slots, expected " +
                       std::to_string(num_slots()));
    }
    std::vector<int> num_replicas(num_logical_experts, 0);
    for (int logical : phy2log[layer]) {
      if (logical < 0 || logical >= num_logical_experts) {
        return error(ErrorCode::kInvalidArgument, "placement layer " + std::to_string(layer) +
                                                      " names expert " + std::to_string(logical) +
                                                      " of " + std::to_string(num_logical_experts));
      }
      ++num_replicas[logical];
    }
    for (int logical = 0; logical < num_logical_experts; ++logical) {
      if (num_replicas[logical] == 0) {
        return error(ErrorCode::kInvalidArgument, "placement layer " + std::to_string(layer) +
                                                      " has no replica of expert " +
                                                      std::to_string(logical));
      }
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

int ReplicaTable::choose(int layer, int logical, int src_rank, uint64_t token_key) const {
  const std::vector<int>& slots = replicas_[layer][logical];
  EEP_CHECK(!slots.empty());
  for (int slot : slots) {
    if (slot / slots_per_rank_ == src_rank) return slot;
  }
  return slots[token_key % slots.size()];
}

void to_json(nlohmann::json& j, const Placement& placement) {
  j = nlohmann::json{{"num_layers", placement.num_layers},
                     {"num_logical_experts", placement.num_logical_experts},
                     {"num_ranks", placement.num_ranks},
                     {"slots_per_rank", placement.slots_per_rank},
                     {"phy2log", placement.phy2log}};
}

void from_json(const nlohmann::json& j, Placement& placement) {
  j.at("num_layers").get_to(placement.num_layers);
  j.at("num_logical_experts").get_to(placement.num_logical_experts);
  j.at("num_ranks").get_to(placement.num_ranks);
  j.at("slots_per_rank").get_to(placement.slots_per_rank);
  j.at("phy2log").get_to(placement.phy2log);
}

}  // namespace eep
