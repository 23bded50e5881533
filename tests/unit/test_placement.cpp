#include <catch2/catch.hpp>

#include <algorithm>
#include <random>

#include "eep/common/placement.h"

using namespace eep;

TEST_CASE("round-robin placement holds every expert and replicates the surplus", "[placement]") {
  auto placement = Placement::round_robin(2, 8, 3, 3);  // 9 slots, 8 experts: one replica
  REQUIRE(placement.is_ok());
  CHECK(placement->num_slots() == 9);
  CHECK(placement->phy2log[0] == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 0});
  CHECK(placement->rank_of_slot(8) == 2);
  CHECK(placement->local_idx_of_slot(8) == 2);
  ReplicaTable table(placement.value());
  CHECK(table.replicas(1, 0) == std::vector<int>{0, 8});
  CHECK(table.replicas(1, 5) == std::vector<int>{5});
  // A replica on the token's own rank wins; otherwise the key spreads tokens over replicas.
  CHECK(table.choose(0, 0, 2, 7) == 8);
  CHECK(table.choose(0, 0, 0, 7) == 0);
  CHECK(table.choose(0, 0, 1, 0) == 0);
  CHECK(table.choose(0, 0, 1, 1) == 8);
  CHECK(table.choose(0, 5, 0, 123) == 5);
}

TEST_CASE("placements that lose an expert or do not fit are refused", "[placement]") {
  CHECK_FALSE(Placement::round_robin(1, 8, 2, 3).is_ok());  // 6 slots < 8 experts
  CHECK(Placement::min_slots_per_rank(8, 3) == 3);
  auto placement = Placement::round_robin(1, 4, 2, 2).value();
  placement.phy2log[0][3] = 0;  // expert 3 has no replica left
  Status lost = placement.validate();
  CHECK(lost.code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(lost.message(), Catch::Contains("no replica of expert 3"));
  placement.phy2log[0][3] = 9;
  CHECK_FALSE(placement.validate().is_ok());
  placement.phy2log[0].pop_back();
  CHECK_FALSE(placement.validate().is_ok());
}

TEST_CASE("placement round-trips through JSON", "[placement]") {
  auto placement = Placement::round_robin(3, 5, 2, 3).value();
  nlohmann::json j = placement;
  auto back = j.get<Placement>();
  CHECK(back.phy2log == placement.phy2log);
  CHECK(back.slots_per_rank == 3);
  CHECK(back.validate().is_ok());
}

namespace {

// A row of num_ranks * slots_per_rank slots holding every expert once and random extra replicas,
// shuffled.
std::vector<int> random_row(int num_experts, int num_slots, std::mt19937& rng) {
  std::vector<int> row(num_slots);
  std::uniform_int_distribution<int> expert(0, num_experts - 1);
  for (int slot = 0; slot < num_slots; ++slot) row[slot] = slot < num_experts ? slot : expert(rng);
  std::shuffle(row.begin(), row.end(), rng);
  return row;
}

// from_row after the moves, every source read before any destination is written.
std::vector<int> apply_moves(const std::vector<int>& from_row,
                             const std::vector<ExpertMove>& moves) {
  std::vector<int> row = from_row;
  for (const ExpertMove& move : moves) row[move.dst_slot] = from_row[move.src_slot];
  return row;
}

}  // namespace

TEST_CASE("expert moves fill every changed slot from a holder of its new expert", "[placement]") {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 500; ++trial) {
    const int num_ranks = 1 + static_cast<int>(rng() % 5);
    const int slots_per_rank = 1 + static_cast<int>(rng() % 6);
    const int num_slots = num_ranks * slots_per_rank;
    const int num_experts = 1 + static_cast<int>(rng() % num_slots);
    const std::vector<int> from = random_row(num_experts, num_slots, rng);
    const std::vector<int> to = random_row(num_experts, num_slots, rng);
    INFO("trial " << trial << ": " << num_ranks << " ranks x " << slots_per_rank << " slots, "
                  << num_experts << " experts");
    const std::vector<ExpertMove> moves = plan_expert_moves(from, to, slots_per_rank);
    CHECK(apply_moves(from, moves) == to);
    int num_changed = 0;
    for (int slot = 0; slot < num_slots; ++slot) num_changed += from[slot] != to[slot];
    CHECK(static_cast<int>(moves.size()) == num_changed);
    for (size_t i = 0; i < moves.size(); ++i) {
      const ExpertMove& move = moves[i];
      if (i > 0) CHECK(moves[i - 1].dst_slot < move.dst_slot);
      CHECK(move.src_slot != move.dst_slot);
      CHECK(from[move.dst_slot] != to[move.dst_slot]);
      // A copy on the destination's own rank is taken whenever one exists.
      const int dst_rank = move.dst_slot / slots_per_rank;
      bool held_locally = false;
      for (int local = 0; local < slots_per_rank; ++local) {
        held_locally = held_locally || from[dst_rank * slots_per_rank + local] == to[move.dst_slot];
      }
      CHECK((move.src_slot / slots_per_rank == dst_rank) == held_locally);
    }
    // Deterministic: the same rows give the same pairs.
    const std::vector<ExpertMove> again = plan_expert_moves(from, to, slots_per_rank);
    REQUIRE(again.size() == moves.size());
    for (size_t i = 0; i < moves.size(); ++i) {
      CHECK(again[i].src_slot == moves[i].src_slot);
      CHECK(again[i].dst_slot == moves[i].dst_slot);
    }
    CHECK(plan_expert_moves(from, from, slots_per_rank).empty());
  }
}

TEST_CASE("expert moves prefer a local copy and spread remote sends over the replicas",
          "[placement]") {
  // 4 ranks x 2 slots; expert 0 on slots 0 (rank 0) and 2 (rank 1).
  const std::vector<int> from = {0, 1, 0, 2, 3, 4, 5, 6};
  // Rank 1 gets expert 0 in slot 3 too (local copy from slot 2); ranks 2 and 3 get it remotely.
  const std::vector<int> to = {0, 1, 0, 0, 0, 4, 0, 6};
  const std::vector<ExpertMove> moves = plan_expert_moves(from, to, 2);
  REQUIRE(moves.size() == 3);
  CHECK(moves[0].dst_slot == 3);
  CHECK(moves[0].src_slot == 2);  // local
  CHECK(moves[1].dst_slot == 4);
  CHECK(moves[1].src_slot == 0);  // first remote taker: first replica
  CHECK(moves[2].dst_slot == 6);
  CHECK(moves[2].src_slot == 2);  // second remote taker: second replica
  // Empty slots (-1, e.g. a rank joining) are filled and never read.
  const std::vector<int> joining = {0, 1, 2, 3, -1, -1};
  const std::vector<ExpertMove> fill = plan_expert_moves(joining, {0, 1, 2, 3, 3, 0}, 2);
  REQUIRE(fill.size() == 2);
  CHECK(fill[0].src_slot == 3);
  CHECK(fill[0].dst_slot == 4);
  CHECK(fill[1].src_slot == 0);
  CHECK(fill[1].dst_slot == 5);
}

TEST_CASE("a placement row is validated alone and a replica table layer is rebuilt",
          "[placement]") {
  auto placement = Placement::round_robin(2, 4, 2, 3).value();  // 6 slots, 4 experts
  CHECK(placement.validate_row({3, 2, 1, 0, 3, 3}, 1).is_ok());
  CHECK_THAT(placement.validate_row({3, 2, 1, 1, 3, 3}, 1).message(),
             Catch::Contains("layer 1 has no replica of expert 0"));
  CHECK_FALSE(placement.validate_row({3, 2, 1, 0, 3}, 0).is_ok());
  CHECK_FALSE(placement.validate_row({3, 2, 1, 0, 3, 4}, 0).is_ok());
  ReplicaTable table(placement);
  table.set_layer(1, {3, 2, 1, 0, 3, 3});
  CHECK(table.replicas(1, 3) == std::vector<int>{0, 4, 5});
  CHECK(table.replicas(1, 0) == std::vector<int>{3});
  CHECK(table.replicas(0, 0) == std::vector<int>{0, 4});  // other layers unchanged
  CHECK(table.choose(1, 3, 1, 0) == 4);
}
