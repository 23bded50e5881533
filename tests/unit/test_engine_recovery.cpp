// A recovery at the engine (docs/fault_tolerance.md, "Weights"): the survivors of a generation
// that lost a member keep their installed weights, send them over the new generation's group
// (nobody serves meanwhile), and read from the checkpoint only the experts that no survivor held;
// the recovered fleet gives the greedy tokens of the fleet before the loss. A survivor whose kept
// weights are not the placement the Assign names makes every rank read the checkpoint. Ranks are
// threads with Gloo groups over loopback.
#include <catch2/catch.hpp>

#include <map>
#include <thread>

#include "engine_fixture.h"

using namespace eep;
using namespace eep::worker;

namespace engine_recovery_test {

const ModelConfig& tiny_config() {
  static const ModelConfig config = model_preset("tiny").value();
  return config;
}

Placement round_robin_over(int num_ranks) {
  const ModelConfig& config = tiny_config();
  return Placement::round_robin(config.num_hidden_layers, config.num_experts, num_ranks,
                                Placement::min_slots_per_rank(config.num_experts, num_ranks))
      .value();
}

// The Assigns of a generation of `members` serving `placement`, one per rank.
std::vector<protocol::Assign> assigns_of(int64_t generation,
                                         const std::vector<std::string>& members,
                                         const Placement& placement) {
  const std::pair<int, int> ports = eep::testing::free_store_ports();
  std::vector<protocol::Assign> assigns;
  for (size_t rank = 0; rank < members.size(); ++rank) {
    protocol::Assign assign;
    assign.generation = generation;
    assign.rank = static_cast<int>(rank);
    assign.world_size = static_cast<int>(members.size());
    assign.members = members;
    assign.control_store = {"127.0.0.1", ports.first};
    assign.ep_store = {"127.0.0.1", ports.second};
    assign.placement = placement;
    assigns.push_back(std::move(assign));
  }
  return assigns;
}

// Builds assigns[i] on engines[i], each on its own thread, and orders the switch; the reports
// of the built generations.
std::vector<BuildReport> build_all(std::vector<EngineCore*> engines,
                                   const std::vector<protocol::Assign>& assigns) {
  std::vector<Status> built(engines.size());
  std::vector<BuildReport> reports(engines.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < engines.size(); ++i) {
    threads.emplace_back([&, i] {
      built[i] = eep::testing::build(*engines[i], assigns[i]);
      if (built[i].is_ok()) reports[i] = engines[i]->build_report();
    });
  }
  for (auto& thread : threads) thread.join();
  for (size_t i = 0; i < engines.size(); ++i) {
    INFO("rank " << i << ": " << built[i].to_string());
    REQUIRE(built[i].is_ok());
  }
  return reports;
}

// Submits the same greedy requests to rank 0 and steps every rank (its own thread) until the
// fleet is idle; the tokens of each request.
std::map<uint64_t, std::vector<int32_t>> serve(std::vector<EngineCore*> engines) {
  for (int i = 0; i < 6; ++i) {
    protocol::SubmitRequest request;
    request.request_id = 1 + i;
    for (int t = 0; t < 7 + 5 * i; ++t) request.prompt_ids.push_back((37 * t + 11 * i) % 512);
    request.params.max_tokens = 12;
    request.params.ignore_eos = true;
    REQUIRE_FALSE(engines[0]->submit(request).has_value());
  }
  std::vector<std::map<uint64_t, std::vector<int32_t>>> outputs(engines.size());
  std::vector<Status> served(engines.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < engines.size(); ++i) {
    threads.emplace_back([&, i] {
      for (int step = 0; step < 1000; ++step) {
        auto result = engines[i]->step(0);
        if (!result.is_ok()) {
          served[i] = result.status();
          return;
        }
        for (const auto& out : result->outputs) {
          auto& tokens = outputs[i][out.request_id];
          tokens.insert(tokens.end(), out.new_tokens.begin(), out.new_tokens.end());
        }
        if (result->idle && engines[i]->serving()) return;
      }
      served[i] = error(ErrorCode::kDeadlineExceeded, "the fleet never went idle");
    });
  }
  for (auto& thread : threads) thread.join();
  for (size_t i = 0; i < engines.size(); ++i) {
    INFO("rank " << i << ": " << served[i].to_string());
    REQUIRE(served[i].is_ok());
  }
  REQUIRE(outputs[0].size() == 6);
  return outputs[0];
}

}  // namespace engine_recovery_test

TEST_CASE("engine recovery: the survivors send what they kept, the checkpoint gives the rest",
          "[engine_generation][recovery]") {
  using namespace engine_recovery_test;
  const std::vector<std::string> before = {"w0", "w1", "w2"};
  const Placement three = round_robin_over(3);  // 6 slots each: rank 2 holds 12..15, 0, 1
  std::vector<std::unique_ptr<EngineCore>> engines;
  for (int rank = 0; rank < 3; ++rank) {
    engines.push_back(eep::testing::make_engine(eep::testing::tiny_model()));
  }
  build_all({engines[0].get(), engines[1].get(), engines[2].get()}, assigns_of(1, before, three));
  const auto expected = serve({engines[0].get(), engines[1].get(), engines[2].get()});

  // w2 is lost; w0 and w1 abandon generation 1, keeping their weights.
  engines[2].reset();
  for (int rank = 0; rank < 2; ++rank) {
    engines[rank]->abandon_current_generation("test: w2 lost");
    REQUIRE_FALSE(engines[rank]->serving());
  }
  const Placement two = round_robin_over(2);  // 8 slots each: rank 1 holds 8..15
  const ModelConfig& config = tiny_config();
  const uint64_t expert_bytes =
      3ull * config.moe_intermediate_size * config.hidden_size * sizeof(float);
  std::vector<protocol::Assign> recovery = assigns_of(2, {"w0", "w1"}, two);
  for (protocol::Assign& assign : recovery) {
    assign.recovery = true;
    assign.previous_members = before;
    assign.previous_placement = three;
  }

  SECTION("the kept weights are the named placement: from peers") {
    const auto reports = build_all({engines[0].get(), engines[1].get()}, recovery);
    // Rank 0 held experts 0..5 and takes 6 and 7 from rank 1; rank 1 held 6..11 and reads
    // 12..15, which only w2 held, from the checkpoint, in every layer.
    CHECK(reports[0].bytes_from_peers == 2 * config.num_hidden_layers * expert_bytes);
    CHECK(reports[0].bytes_from_checkpoint == 0);
    CHECK(reports[1].bytes_from_peers == 0);
    CHECK(reports[1].bytes_from_checkpoint == 4 * config.num_hidden_layers * expert_bytes);
  }
  SECTION("a survivor's kept weights are not the named placement: the checkpoint everywhere") {
    // As after a rebalance that the loss interrupted: the coordinator names a placement that
    // differs from what the survivors served in one layer.
    Placement named = three;
    std::swap(named.phy2log[1][0], named.phy2log[1][6]);
    for (auto& assign : recovery) assign.previous_placement = named;
    const auto reports = build_all({engines[0].get(), engines[1].get()}, recovery);
    for (const BuildReport& report : reports) {
      CHECK(report.bytes_from_peers == 0);
      CHECK(report.bytes_from_checkpoint >= 8 * config.num_hidden_layers * expert_bytes);
    }
  }
  // Either way the recovered fleet serves the greedy tokens of the fleet before the loss.
  CHECK(serve({engines[0].get(), engines[1].get()}) == expected);
  for (int rank = 0; rank < 2; ++rank) CHECK(engines[rank]->generation() == 2);
}
