#include <catch2/catch.hpp>

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
