#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <random>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "eep/coordinator/eplb.h"

using namespace eep;
using namespace eep::coordinator;

namespace {

// Token counts per layer: `distribution` is "uniform", "zipf<A>" (Zipf with exponent A over a
// shuffled expert order) or "hot" (four experts num_experts/4 times as popular as the others).
ExpertTokenCounts make_load(int num_layers, int num_experts, const std::string& distribution,
                            uint64_t seed) {
  std::mt19937_64 rng(seed);
  ExpertTokenCounts load(num_layers);
  for (auto& layer : load) {
    std::vector<double> popularity(num_experts, 1.0);
    std::vector<int> order(num_experts);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    if (distribution.rfind("zipf", 0) == 0) {
      const double exponent = std::stod(distribution.substr(4));
      for (int i = 0; i < num_experts; ++i) popularity[order[i]] = 1.0 / std::pow(i + 1, exponent);
    } else if (distribution == "hot") {
      for (int i = 0; i < std::min(4, num_experts); ++i) popularity[order[i]] = num_experts / 4.0;
    }
    std::discrete_distribution<int> pick(popularity.begin(), popularity.end());
    layer.assign(num_experts, 0);
    for (int token = 0; token < 20000; ++token) ++layer[pick(rng)];
  }
  return load;
}

std::vector<int> slots_per_rank_of(const Placement& placement, int layer) {
  std::vector<int> slots(placement.num_ranks, 0);
  for (int slot = 0; slot < static_cast<int>(placement.phy2log[layer].size()); ++slot)
    ++slots[placement.rank_of_slot(slot)];
  return slots;
}

}  // namespace

TEST_CASE(
    "EPLB placements keep every expert, fill every slot, are deterministic and beat "
    "round-robin",
    "[eplb]") {
  struct Shape {
    int num_experts, num_ranks, slots_per_rank, num_nodes, num_groups;
  };
  const std::vector<Shape> shapes = {
      {8, 1, 8, 1, 1},   {8, 2, 4, 1, 1},    {8, 2, 6, 1, 1},    {16, 3, 6, 1, 1},
      {16, 4, 5, 1, 1},  {16, 4, 8, 1, 1},   {64, 4, 16, 1, 1},  {64, 4, 20, 1, 1},
      {64, 8, 9, 1, 1},  {128, 4, 34, 1, 1}, {128, 8, 17, 1, 1}, {128, 3, 48, 1, 1},
      {64, 4, 20, 2, 8}, {128, 8, 16, 2, 8}, {128, 8, 20, 4, 8}, {32, 4, 10, 2, 4},
      {16, 4, 5, 2, 1},  // groups not a multiple of nodes: the global policy
  };
  const std::vector<std::string> distributions = {"uniform", "zipf0.8", "zipf1.2", "zipf2.0",
                                                  "hot"};
  uint64_t seed = 1;
  for (const Shape& shape : shapes) {
    for (const std::string& distribution : distributions) {
      CAPTURE(shape.num_experts, shape.num_ranks, shape.slots_per_rank, shape.num_nodes,
              shape.num_groups, distribution);
      const auto load = make_load(3, shape.num_experts, distribution, ++seed);
      const EplbConfig config{shape.num_ranks, shape.slots_per_rank, shape.num_nodes,
                              shape.num_groups};
      auto placement = rebalance_experts(load, config);
      REQUIRE(placement.is_ok());
      REQUIRE(placement->validate().is_ok());  // every expert has a replica, ids in range
      REQUIRE(placement->num_layers == 3);
      REQUIRE(placement->num_logical_experts == shape.num_experts);
      for (int layer = 0; layer < 3; ++layer) {
        REQUIRE(static_cast<int>(placement->phy2log[layer].size()) ==
                shape.num_ranks * shape.slots_per_rank);
        CHECK(slots_per_rank_of(*placement, layer) ==
              std::vector<int>(shape.num_ranks, shape.slots_per_rank));
      }
      auto again = rebalance_experts(load, config);
      REQUIRE(again.is_ok());
      CHECK(again->phy2log == placement->phy2log);

      auto ours = balancedness(load, *placement);
      REQUIRE(ours.is_ok());
      auto round_robin =
          Placement::round_robin(3, shape.num_experts, shape.num_ranks, shape.slots_per_rank);
      REQUIRE(round_robin.is_ok());
      auto baseline = balancedness(load, *round_robin);
      REQUIRE(baseline.is_ok());
      for (int layer = 0; layer < 3; ++layer) {
        CHECK(ours->per_layer[layer] <= 1.0 + 1e-12);
        // Hierarchical placements keep groups on one node, which round-robin does not.
        if (shape.num_nodes == 1 || shape.num_groups % shape.num_nodes != 0)
          CHECK(ours->per_layer[layer] >= baseline->per_layer[layer] - 1e-9);
      }
      CHECK(ours->mean >= baseline->mean - 1e-9);
    }
  }
}

TEST_CASE("hierarchical EPLB keeps each expert group on one node", "[eplb]") {
  const auto load = make_load(4, 64, "zipf1.2", 7);
  auto placement = rebalance_experts(load, EplbConfig{8, 10, 2, 8});
  REQUIRE(placement.is_ok());
  const int group_size = 8, ranks_per_node = 4;
  for (int layer = 0; layer < 4; ++layer) {
    std::vector<std::vector<int>> nodes_of_group(8);
    for (int slot = 0; slot < placement->num_slots(); ++slot) {
      const int node = placement->rank_of_slot(slot) / ranks_per_node;
      nodes_of_group[placement->logical_of(layer, slot) / group_size].push_back(node);
    }
    std::vector<int> groups_per_node(2, 0);
    for (const auto& nodes : nodes_of_group) {
      REQUIRE(!nodes.empty());
      CHECK(std::all_of(nodes.begin(), nodes.end(), [&](int n) { return n == nodes[0]; }));
      ++groups_per_node[nodes[0]];
    }
    CHECK(groups_per_node == std::vector<int>{4, 4});
  }
}

TEST_CASE("EPLB is at least as balanced as DeepSeek's eplb.py on the reference cases", "[eplb]") {
  std::ifstream file(std::string(EEP_TEST_DATA_DIR) + "/eplb/cases.json");
  REQUIRE(file.good());
  const auto cases = nlohmann::json::parse(file).at("cases");
  REQUIRE(cases.size() >= 10);
  std::printf("\nEPLB vs eplb.py (balancedness = mean/max rank load; per layer, then mean)\n");
  std::printf("%-4s %-28s %-8s %-31s %-31s %s\n", "case", "E/ranks x slots/nodes/groups", "dist",
              "eplb.py per layer", "ours per layer", "mean eplb.py -> ours");
  for (size_t case_idx = 0; case_idx < cases.size(); ++case_idx) {
    const auto& c = cases[case_idx];
    CAPTURE(case_idx);
    const auto load = c.at("load").get<ExpertTokenCounts>();
    const EplbConfig config{c.at("num_ranks").get<int>(), c.at("slots_per_rank").get<int>(),
                            c.at("num_nodes").get<int>(), c.at("num_groups").get<int>()};
    auto placement = rebalance_experts(load, config);
    REQUIRE(placement.is_ok());
    auto ours = balancedness(load, *placement);
    REQUIRE(ours.is_ok());

    // Our metric, applied to eplb.py's own placement, reproduces its recorded balancedness.
    Placement theirs_placement = *placement;
    theirs_placement.phy2log = c.at("eplb_phy2log").get<std::vector<std::vector<int>>>();
    auto theirs_recomputed = balancedness(load, theirs_placement);
    REQUIRE(theirs_recomputed.is_ok());
    const auto theirs = c.at("eplb_balancedness").get<std::vector<double>>();
    REQUIRE(theirs.size() == ours->per_layer.size());
    std::string theirs_text, ours_text;
    for (size_t layer = 0; layer < theirs.size(); ++layer) {
      CHECK(theirs_recomputed->per_layer[layer] == Approx(theirs[layer]).margin(1e-6));
      CHECK(ours->per_layer[layer] >= theirs[layer] - 1e-9);
      char cell[16];
      std::snprintf(cell, sizeof(cell), " %.4f", theirs[layer]);
      theirs_text += cell;
      std::snprintf(cell, sizeof(cell), " %.4f", ours->per_layer[layer]);
      ours_text += cell;
    }
    const double theirs_mean = c.at("eplb_mean_balancedness").get<double>();
    CHECK(ours->mean >= theirs_mean - 1e-9);
    const std::string shape =
        std::to_string(c.at("num_logical_experts").get<int>()) + "/" +
        std::to_string(config.num_ranks) + "x" + std::to_string(config.slots_per_rank) + "/" +
        std::to_string(config.num_nodes) + "/" + std::to_string(config.num_groups);
    std::printf("%-4zu %-28s %-8s%-32s%-32s %.4f -> %.4f\n", case_idx, shape.c_str(),
                c.at("distribution").get<std::string>().c_str(), theirs_text.c_str(),
                ours_text.c_str(), theirs_mean, ours->mean);
  }
}

TEST_CASE("EPLB refuses impossible or malformed input with a clear error", "[eplb]") {
  const LoadMatrix load = {{5, 1, 1, 1}, {1, 1, 1, 1}};
  auto expect_invalid = [](const Result<Placement>& result, const std::string& text) {
    REQUIRE_FALSE(result.is_ok());
    CHECK(result.status().code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(result.status().message(), Catch::Contains(text));
  };
  expect_invalid(rebalance_experts(load, EplbConfig{2, 1}), "use at least 2 slots per rank");
  expect_invalid(rebalance_experts(load, EplbConfig{0, 4}), ">= 1 rank");
  expect_invalid(rebalance_experts(load, EplbConfig{2, 0}), ">= 1 rank");
  expect_invalid(rebalance_experts(load, EplbConfig{-3, 4}), ">= 1 rank");
  expect_invalid(rebalance_experts(LoadMatrix{}, EplbConfig{2, 2}), ">= 1 layer");
  expect_invalid(rebalance_experts(LoadMatrix{{}}, EplbConfig{2, 2}), ">= 1 expert");
  expect_invalid(rebalance_experts(LoadMatrix{{1, 2, 3, 4}, {1, 2}}, EplbConfig{2, 2}),
                 "layer 1 has 2 experts");
  expect_invalid(rebalance_experts(LoadMatrix{{1, -2, 3, 4}}, EplbConfig{2, 2}), ">= 0");
  expect_invalid(rebalance_experts(LoadMatrix{{1, NAN, 3, 4}}, EplbConfig{2, 2}), "finite");
  expect_invalid(rebalance_experts(ExpertTokenCounts{{1, -2, 3, 4}}, EplbConfig{2, 2}), ">= 0");
  expect_invalid(rebalance_experts(load, EplbConfig{3, 2, 2, 2}), "equal nodes");   // 3 ranks
  expect_invalid(rebalance_experts(load, EplbConfig{2, 2, 1, 3}), "equal groups");  // 4 / 3
  expect_invalid(rebalance_experts(load, EplbConfig{2, 2, 1, 0}), ">= 1 expert group");

  auto placement = rebalance_experts(load, EplbConfig{2, 3}).value();
  CHECK_FALSE(balancedness(LoadMatrix{{1, 2, 3}}, placement).is_ok());  // 1 layer x 3 experts
  Placement broken = placement;
  broken.phy2log[0][0] = 7;
  CHECK_FALSE(balancedness(load, broken).is_ok());
}

TEST_CASE("balancedness splits an expert's load evenly among its replicas", "[eplb]") {
  Placement placement;
  placement.num_layers = 2;
  placement.num_logical_experts = 3;
  placement.num_ranks = 2;
  placement.slots_per_rank = 2;
  placement.phy2log = {{0, 1, 0, 2}, {0, 1, 2, 2}};
  const LoadMatrix load = {{8, 2, 2}, {0, 0, 0}};
  auto result = balancedness(load, placement);
  REQUIRE(result.is_ok());
  // Layer 0: rank loads 4 + 2 = 6 and 4 + 2 = 6. Layer 1: no load counts as balanced.
  CHECK(result->per_layer == std::vector<double>{1.0, 1.0});
  const LoadMatrix skewed = {{8, 2, 2}, {6, 0, 2}};
  result = balancedness(skewed, placement);
  REQUIRE(result.is_ok());
  // Layer 1: rank loads 6 + 0 and 1 + 1 -> mean 4, max 6.
  CHECK(result->per_layer[1] == Approx(4.0 / 6.0));
  CHECK(result->mean == Approx((1.0 + 4.0 / 6.0) / 2));
}
