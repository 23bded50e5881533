// The weight transfer plan of a scale (plan_weight_transfer, docs/weight_transfer.md): on random
// scales up, down and with members replaced, every piece of every rank's next weights has exactly
// one source that holds it (in a scale-down the leaving ranks send too; with members replaced
// what only leaving ranks held is read from the checkpoint), every rank computes the same chunks,
// and a rank's share of a chunk pairs with its peers' shares.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <tuple>

#include "eep/worker/elastic/weight_transfer.h"

using namespace eep;
using namespace eep::worker;

namespace {

// Every logical expert once per layer, the surplus slots random replicas, shuffled.
Placement random_placement(int layers, int experts, int ranks, int slots, std::mt19937& rng) {
  Placement placement = Placement::round_robin(layers, experts, ranks, std::max(slots, 1)).value();
  std::uniform_int_distribution<int> expert(0, experts - 1);
  for (auto& row : placement.phy2log) {
    for (int slot = 0; slot < placement.num_slots(); ++slot) {
      row[slot] = slot < experts ? slot : expert(rng);
    }
    std::shuffle(row.begin(), row.end(), rng);
  }
  REQUIRE(placement.validate().is_ok());
  return placement;
}

struct Scale {
  Placement previous;
  Placement next;
  std::vector<std::string> previous_members;
  std::vector<std::string> members;
  bool recovery = false;  // the previous members not in `members` were lost: they send nothing
};

// From `from` ranks to `to` ranks: the first `kept` of the previous members stay (in order),
// the rest of the next members are new.
Scale random_scale(int from, int to, int kept, std::mt19937& rng) {
  constexpr int kLayers = 3;
  constexpr int kExperts = 10;
  Scale scale;
  const int from_slots =
      Placement::min_slots_per_rank(kExperts, from) + static_cast<int>(rng() % 3);
  const int to_slots = Placement::min_slots_per_rank(kExperts, to) + static_cast<int>(rng() % 3);
  scale.previous = random_placement(kLayers, kExperts, from, from_slots, rng);
  scale.next = random_placement(kLayers, kExperts, to, to_slots, rng);
  for (int r = 0; r < from; ++r) scale.previous_members.push_back("old" + std::to_string(r));
  std::vector<std::string> staying(scale.previous_members.begin(),
                                   scale.previous_members.begin() + kept);
  std::shuffle(staying.begin(), staying.end(), rng);
  scale.members = staying;
  for (int r = kept; r < to; ++r) scale.members.push_back("new" + std::to_string(r));
  std::shuffle(scale.members.begin(), scale.members.end(), rng);
  return scale;
}

protocol::Assign assign_for(const Scale& scale, int rank) {
  protocol::Assign assign;
  assign.generation = 7;
  assign.rank = rank;
  assign.world_size = static_cast<int>(scale.members.size());
  assign.members = scale.members;
  assign.placement = scale.next;
  assign.previous_members = scale.previous_members;
  assign.previous_placement = scale.previous;
  assign.recovery = scale.recovery;
  return assign;
}

const std::vector<size_t> kDenseBytes = {4000, 16, 4000, 64, 256, 256, 64};
constexpr size_t kExpertBytes = 96;

// What a piece of rank `rank` holds: a tensor, or a layer's logical expert.
std::pair<int, int> content(const Placement& placement, int rank, const WeightPiece& piece) {
  if (piece.layer < 0) return {-1, piece.index};
  return {piece.layer,
          placement.phy2log[piece.layer][rank * placement.slots_per_rank + piece.index]};
}

int index_of(const std::vector<std::string>& ids, const std::string& id) {
  const auto it = std::find(ids.begin(), ids.end(), id);
  return it == ids.end() ? -1 : static_cast<int>(it - ids.begin());
}

void check_plan(const Scale& scale, size_t chunk_bytes) {
  // The transfer's group: g's ranks when g+1 has no new member, else g+1's; a recovery's always
  // g+1's (the lost members cannot take part).
  const bool scale_down =
      !scale.recovery &&
      std::all_of(scale.members.begin(), scale.members.end(),
                  [&](const std::string& id) { return index_of(scale.previous_members, id) >= 0; });
  const std::vector<std::string>& group = scale_down ? scale.previous_members : scale.members;
  const int num_ranks = static_cast<int>(group.size());
  auto previous_rank = [&](int u) { return index_of(scale.previous_members, group[u]); };
  auto next_rank = [&](int u) { return index_of(scale.members, group[u]); };
  std::vector<WeightTransferPlan> plans;
  for (int u = 0; u < num_ranks; ++u) {
    protocol::Assign assign = assign_for(scale, next_rank(u));  // -1: a leaving rank's handover
    auto plan =
        plan_weight_transfer(assign, group[u], scale.next, kDenseBytes, kExpertBytes, chunk_bytes);
    REQUIRE(plan.is_ok());
    REQUIRE(plan->has_value());
    plans.push_back(std::move(plan->value()));
    const WeightTransferPlan& p = plans.back();
    CHECK(p.over_previous_group == scale_down);
    CHECK(p.recovery == scale.recovery);
    // A rank that serves g sends between its steps; in a recovery nobody serves.
    CHECK(p.sends_between_steps() == (!scale.recovery && previous_rank(u) >= 0));
    CHECK(p.num_ranks == num_ranks);
    CHECK(p.rank == u);
    CHECK(p.previous_rank == previous_rank(u));
    CHECK(p.next_rank == next_rank(u));
  }
  // One plan for all: the same chunks on every rank.
  for (const WeightTransferPlan& plan : plans) {
    REQUIRE(plan.chunks.size() == plans[0].chunks.size());
    for (size_t c = 0; c < plan.chunks.size(); ++c) CHECK(plan.chunks[c] == plans[0].chunks[c]);
  }
  // Every destination piece exactly once, from a rank of g that holds its content.
  std::set<std::tuple<int, int, int>> written;  // group rank, layer, index
  for (const auto& chunk : plans[0].chunks) {
    REQUIRE_FALSE(chunk.empty());
    // Each rank sends, copies or receives at most chunk_bytes in a chunk, unless it takes part in
    // one copy only (a piece larger than chunk_bytes).
    std::vector<size_t> load(num_ranks, 0);
    std::vector<int> num_copies(num_ranks, 0);
    for (const PieceCopy& copy : chunk) {
      load[copy.src_rank] += copy.bytes;
      ++num_copies[copy.src_rank];
      if (copy.dst_rank != copy.src_rank) {
        load[copy.dst_rank] += copy.bytes;
        ++num_copies[copy.dst_rank];
      }
    }
    for (int r = 0; r < num_ranks; ++r) CHECK((num_copies[r] <= 1 || load[r] <= chunk_bytes));
    for (const PieceCopy& copy : chunk) {
      INFO("copy " << copy.src_rank << ":" << copy.src.layer << "/" << copy.src.index << " -> "
                   << copy.dst_rank << ":" << copy.dst.layer << "/" << copy.dst.index);
      CHECK(written.insert({copy.dst_rank, copy.dst.layer, copy.dst.index}).second);
      REQUIRE(previous_rank(copy.src_rank) >= 0);  // only ranks of g send
      REQUIRE(next_rank(copy.dst_rank) >= 0);      // only ranks of g+1 receive
      CHECK(content(scale.previous, previous_rank(copy.src_rank), copy.src) ==
            content(scale.next, next_rank(copy.dst_rank), copy.dst));
      CHECK(copy.bytes == (copy.dst.layer < 0 ? kDenseBytes[copy.dst.index] : kExpertBytes));
      // A staying rank copies its own non-expert tensors.
      if (copy.dst.layer < 0 && previous_rank(copy.dst_rank) >= 0) {
        CHECK(copy.src_rank == copy.dst_rank);
      }
    }
  }
  for (int u = 0; u < num_ranks; ++u) {
    const WeightTransferPlan& plan = plans[u];
    if (next_rank(u) < 0) {
      CHECK(plan.from_checkpoint.empty());
      continue;
    }
    const int rank = next_rank(u);
    for (size_t t = 0; t < kDenseBytes.size(); ++t) {
      CHECK(written.count({u, -1, static_cast<int>(t)}) == 1);
    }
    std::set<std::pair<int, int>> from_checkpoint;
    for (const CheckpointSlot& slot : plan.from_checkpoint) {
      from_checkpoint.insert({slot.layer, slot.local_slot});
      CHECK(slot.expert ==
            scale.next.phy2log[slot.layer][rank * scale.next.slots_per_rank + slot.local_slot]);
    }
    CHECK(plan.num_bytes_from_checkpoint == plan.from_checkpoint.size() * kExpertBytes);
    for (int layer = 0; layer < scale.next.num_layers; ++layer) {
      std::set<int> held;  // by the group's ranks in g
      for (int v = 0; v < num_ranks; ++v) {
        if (previous_rank(v) < 0) continue;
        for (int k = 0; k < scale.previous.slots_per_rank; ++k) {
          held.insert(
              scale.previous.phy2log[layer][previous_rank(v) * scale.previous.slots_per_rank + k]);
        }
      }
      for (int k = 0; k < scale.next.slots_per_rank; ++k) {
        const int expert = scale.next.phy2log[layer][rank * scale.next.slots_per_rank + k];
        const bool copied = written.count({u, layer, k}) == 1;
        const bool read = from_checkpoint.count({layer, k}) == 1;
        INFO("rank " << rank << " layer " << layer << " slot " << k << " expert " << expert);
        CHECK(copied != read);
        CHECK(read == (held.count(expert) == 0));
        if (scale_down) CHECK_FALSE(read);  // the leaving ranks hand over what only they hold
      }
    }
  }
  // A rank's share of a chunk pairs with its peers': what r sends to p is what p receives from r.
  for (const auto& chunk : plans[0].chunks) {
    std::vector<ChunkSchedule> schedules;
    for (int u = 0; u < num_ranks; ++u) schedules.push_back(schedule_chunk(chunk, u, num_ranks));
    for (int r = 0; r < num_ranks; ++r) {
      CHECK(schedules[r].send_bytes[r] == 0);
      for (int p = 0; p < num_ranks; ++p) {
        CHECK(schedules[r].send_bytes[p] == schedules[p].recv_bytes[r]);
      }
      for (const PieceCopy& copy : schedules[r].local) CHECK(copy.src_rank == r);
      if (plans[r].is_new_rank()) {
        CHECK(schedules[r].sends.empty());
        CHECK(schedules[r].local.empty());
      }
      if (plans[r].is_leaving_rank()) {
        CHECK(schedules[r].recvs.empty());
        CHECK(schedules[r].local.empty());
      }
    }
  }
}

}  // namespace

TEST_CASE("every piece of the next weights has one source that holds it", "[weight_transfer]") {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 300; ++trial) {
    const int from = 1 + static_cast<int>(rng() % 5);
    const int to = 1 + static_cast<int>(rng() % 5);
    const int kept = 1 + static_cast<int>(rng() % std::min(from, to));
    const Scale scale = random_scale(from, to, kept, rng);
    const size_t chunk_bytes = std::vector<size_t>{1, 500, 5000, 1 << 20}[trial % 4];
    INFO("trial " << trial << ": " << from << " -> " << to << " ranks, " << kept << " kept, "
                  << scale.previous.slots_per_rank << " -> " << scale.next.slots_per_rank
                  << " slots, chunks of " << chunk_bytes << " bytes");
    check_plan(scale, chunk_bytes);
  }
}

TEST_CASE("a scale-up sends each non-expert tensor from one serving rank, striped",
          "[weight_transfer]") {
  std::mt19937 rng(5);
  const Scale scale = random_scale(2, 5, 2, rng);
  auto plan = plan_weight_transfer(assign_for(scale, 0), scale.members[0], scale.next, kDenseBytes,
                                   kExpertBytes, 1 << 20);
  REQUIRE(plan.is_ok());
  REQUIRE(plan->has_value());
  const WeightTransferPlan& p = plan->value();
  REQUIRE(p.staying.size() == 2);
  CHECK(p.from_checkpoint.empty());  // a scale-up keeps every expert on a serving rank
  for (const auto& chunk : p.chunks) {
    for (const PieceCopy& copy : chunk) {
      if (copy.dst.layer >= 0 || copy.src_rank == copy.dst_rank) continue;
      CHECK(copy.src_rank == p.staying[copy.dst.index % 2]);
    }
  }
}

TEST_CASE("nothing comes from peers at the first generation or when no member stays",
          "[weight_transfer]") {
  std::mt19937 rng(9);
  Scale scale = random_scale(2, 3, 1, rng);
  protocol::Assign first = assign_for(scale, 0);
  first.previous_members.clear();
  first.previous_placement.reset();
  auto none =
      plan_weight_transfer(first, scale.members[0], scale.next, kDenseBytes, kExpertBytes, 1 << 20);
  REQUIRE(none.is_ok());
  CHECK_FALSE(none->has_value());

  protocol::Assign replaced = assign_for(scale, 0);
  replaced.previous_members = {"gone0", "gone1"};
  auto fresh = plan_weight_transfer(replaced, scale.members[0], scale.next, kDenseBytes,
                                    kExpertBytes, 1 << 20);
  REQUIRE(fresh.is_ok());
  CHECK_FALSE(fresh->has_value());

  // A previous generation that does not fit is refused with the reason.
  protocol::Assign wrong = assign_for(scale, 0);
  wrong.previous_members.push_back("extra");
  auto refused =
      plan_weight_transfer(wrong, scale.members[0], scale.next, kDenseBytes, kExpertBytes, 1 << 20);
  REQUIRE_FALSE(refused.is_ok());
  CHECK(refused.status().code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(refused.status().message(), Catch::Contains("3 members"));

  auto stranger = plan_weight_transfer(assign_for(scale, 0), "w99", scale.next, kDenseBytes,
                                       kExpertBytes, 1 << 20);
  REQUIRE_FALSE(stranger.is_ok());
  CHECK_THAT(stranger.status().message(), Catch::Contains("'w99' is neither"));
}

TEST_CASE("chunks are packed greedily: a chunk ends only when the next copy would pass chunk_bytes",
          "[weight_transfer]") {
  // Every piece of one size and chunk_bytes a multiple of it, so that chunks fill exactly.
  std::mt19937 rng(5);
  const std::vector<size_t> dense(6, kExpertBytes);
  const size_t chunk_bytes = 3 * kExpertBytes;
  int num_full = 0;  // (chunk, rank) pairs that carry exactly chunk_bytes
  for (int trial = 0; trial < 20; ++trial) {
    const Scale scale = random_scale(2, 3, 2, rng);
    auto plan = plan_weight_transfer(assign_for(scale, 0), scale.members[0], scale.next, dense,
                                     kExpertBytes, chunk_bytes);
    REQUIRE(plan.is_ok());
    REQUIRE(plan->has_value());
    const WeightTransferPlan& p = **plan;
    for (size_t k = 0; k < p.chunks.size(); ++k) {
      CAPTURE(trial, k);
      // What each rank sends and receives in the chunk (a copy to itself counts once).
      std::vector<size_t> load(p.num_ranks, 0);
      for (const PieceCopy& copy : p.chunks[k]) {
        load[copy.src_rank] += copy.bytes;
        if (copy.dst_rank != copy.src_rank) load[copy.dst_rank] += copy.bytes;
      }
      for (const size_t bytes : load) {
        CHECK(bytes <= chunk_bytes);
        num_full += bytes == chunk_bytes;
      }
      if (k + 1 < p.chunks.size()) {
        const PieceCopy& next = p.chunks[k + 1].front();
        CHECK((load[next.src_rank] + next.bytes > chunk_bytes ||
               load[next.dst_rank] + next.bytes > chunk_bytes));
      }
    }
  }
  CHECK(num_full > 0);
}

TEST_CASE("a recovery takes what the survivors kept from them and the rest from the checkpoint",
          "[weight_transfer][recovery]") {
  std::mt19937 rng(12);
  for (int trial = 0; trial < 300; ++trial) {
    // At least one member lost and one survivor; spares may join.
    const int from = 2 + static_cast<int>(rng() % 4);
    const int survivors = 1 + static_cast<int>(rng() % (from - 1));
    const int spares = static_cast<int>(rng() % 3);
    Scale scale = random_scale(from, survivors + spares, survivors, rng);
    scale.recovery = true;
    const size_t chunk_bytes = std::vector<size_t>{1, 500, 5000, 1 << 20}[trial % 4];
    INFO("trial " << trial << ": " << from << " ranks, " << survivors << " survived, " << spares
                  << " spares, " << scale.previous.slots_per_rank << " -> "
                  << scale.next.slots_per_rank << " slots, chunks of " << chunk_bytes << " bytes");
    check_plan(scale, chunk_bytes);
  }
  // Without a spare every member of g+1 was in g, as in a scale-down, yet the lost rank cannot
  // send: g+1's group, and its two experts come from the checkpoint.
  Scale lost;
  lost.previous = Placement::round_robin(1, 4, 2, 2).value();  // rank 0: 0 1, rank 1: 2 3
  lost.next = Placement::round_robin(1, 4, 1, 4).value();
  lost.previous_members = {"a", "b"};
  lost.members = {"a"};
  lost.recovery = true;
  auto plan =
      plan_weight_transfer(assign_for(lost, 0), "a", lost.next, kDenseBytes, kExpertBytes, 1 << 20);
  REQUIRE(plan.is_ok());
  REQUIRE(plan->has_value());
  CHECK_FALSE((*plan)->over_previous_group);
  CHECK((*plan)->num_ranks == 1);
  REQUIRE((*plan)->from_checkpoint.size() == 2);
  CHECK((*plan)->from_checkpoint[0] == CheckpointSlot{0, 2, 2});
  CHECK((*plan)->from_checkpoint[1] == CheckpointSlot{0, 3, 3});
  check_plan(lost, 1 << 20);
}
