// The engine's side of EPLB (DESIGN.md section 8, engine_core.h): the assigned placement, load
// reports, and rebalances moved in lockstep. Engines over a generated tiny model; the ranks of a
// two-rank fleet are threads with Gloo groups over loopback.
#include <catch2/catch.hpp>

#include <array>
#include <functional>
#include <map>
#include <numeric>
#include <random>
#include <thread>

#include "eep/worker/engine/engine_core.h"
#include "eep/worker/model/random_checkpoint.h"
#include "engine_fixture.h"
#include "scratch_dir.h"

using namespace eep;
using namespace eep::worker;
using namespace std::chrono_literals;

namespace {

constexpr int kTopK = 4;  // the tiny preset's experts per token
constexpr int kMaxEplbSteps = 2000;

const std::string& skewed_tiny_model() {
  static const std::string dir = [] {
    const auto path = eep::testing::process_scratch_dir("eep_test_engine_eplb") / "tiny";
    auto config = model_preset("tiny");
    REQUIRE(config.is_ok());
    RandomCheckpointOptions options;
    options.seed = 21;
    options.router_skew = 4.0;  // a few experts take most tokens, as EPLB expects
    REQUIRE(write_random_checkpoint(config.value(), options, path).is_ok());
    return path.string();
  }();
  return dir;
}

std::unique_ptr<EngineCore> make_engine() {
  return eep::testing::make_engine(skewed_tiny_model());
}

protocol::Assign one_rank_assign(int64_t generation) {
  protocol::Assign assign;
  assign.generation = generation;
  assign.rank = 0;
  assign.world_size = 1;
  assign.members = {"w0"};
  return assign;
}

using eep::testing::build;

Placement round_robin(int num_ranks, int slots_per_rank) {
  auto placement = Placement::round_robin(4, 16, num_ranks, slots_per_rank);
  REQUIRE(placement.is_ok());
  return placement.value();
}

// Every layer a different shuffle of the 16 experts, the surplus slots replicating random ones.
Placement shuffled(int num_ranks, int slots_per_rank, uint32_t seed) {
  Placement placement = round_robin(num_ranks, slots_per_rank);
  std::mt19937 rng(seed);
  for (auto& row : placement.phy2log) {
    std::vector<int> experts(placement.num_slots());
    std::iota(experts.begin(), experts.begin() + 16, 0);
    for (size_t slot = 16; slot < experts.size(); ++slot) experts[slot] = rng() % 16;
    std::shuffle(experts.begin(), experts.end(), rng);
    row = experts;
  }
  REQUIRE(placement.validate().is_ok());
  return placement;
}

protocol::Rebalance rebalance_to(Placement placement, uint64_t plan_id, int layers_per_step,
                                 int64_t generation = 1) {
  protocol::Rebalance rebalance;
  rebalance.generation = generation;
  rebalance.plan_id = plan_id;
  rebalance.layers_per_step = layers_per_step;
  rebalance.placement = std::move(placement);
  return rebalance;
}

std::vector<protocol::SubmitRequest> greedy_requests(uint64_t first_id, int num_requests,
                                                     uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<protocol::SubmitRequest> requests;
  for (int i = 0; i < num_requests; ++i) {
    protocol::SubmitRequest request;
    request.request_id = first_id + i;
    request.prompt_ids.resize(5 + rng() % 30);
    for (int32_t& id : request.prompt_ids) id = static_cast<int32_t>(rng() % 512);
    request.params.max_tokens = 16 + i % 3;
    request.params.ignore_eos = true;
    requests.push_back(std::move(request));
  }
  return requests;
}

// What one rank saw while stepping until the fleet went idle.
struct RankLog {
  std::map<uint64_t, std::vector<int32_t>> outputs;
  std::vector<protocol::ExpertLoad> loads;
  std::vector<std::pair<int, protocol::RebalanceDone>> dones;  // with the step index
  int num_steps = 0;
};

// Steps until the fleet is idle; before_step(i) runs before step i.
Status step_until_idle(EngineCore& engine, RankLog& log,
                       const std::function<Status(int)>& before_step = {}) {
  for (int i = 0; i < kMaxEplbSteps; ++i) {
    if (before_step) EEP_RETURN_IF_ERROR(before_step(i));
    EEP_ASSIGN_OR_RETURN(StepResult result, engine.step(0));
    ++log.num_steps;
    for (const auto& out : result.outputs) {
      auto& tokens = log.outputs[out.request_id];
      tokens.insert(tokens.end(), out.new_tokens.begin(), out.new_tokens.end());
      if (out.finish_reason == "error") return error(ErrorCode::kInternal, out.error);
    }
    if (result.expert_load) log.loads.push_back(std::move(*result.expert_load));
    if (result.rebalance_done) log.dones.emplace_back(i, std::move(*result.rebalance_done));
    if (result.idle) return Status::ok();
  }
  return error(ErrorCode::kDeadlineExceeded, "the fleet never went idle");
}

Status submit_all(EngineCore& engine, const std::vector<protocol::SubmitRequest>& requests) {
  for (const auto& request : requests) {
    if (auto refused = engine.submit(request)) {
      return error(ErrorCode::kInternal, "refused: " + refused->error);
    }
  }
  return Status::ok();
}

// Tokens routed to the slots of each layer, summed over reports.
std::vector<int64_t> tokens_per_layer(const std::vector<protocol::ExpertLoad>& loads) {
  std::vector<int64_t> sums;
  for (const auto& load : loads) {
    sums.resize(std::max(sums.size(), load.counts.size()), 0);
    for (size_t layer = 0; layer < load.counts.size(); ++layer) {
      for (int64_t count : load.counts[layer]) sums[layer] += count;
    }
  }
  return sums;
}

// Two fresh engines over loopback groups, each serving its own requests; rebalance_at[rank] >= 0
// holds `rebalance` on that rank before that step.
std::vector<RankLog> run_two_ranks(const std::optional<protocol::Rebalance>& rebalance,
                                   std::array<int, 2> rebalance_at,
                                   std::vector<Placement>* placements_after = nullptr) {
  const std::pair<int, int> ports = eep::testing::free_store_ports();
  const int control_port = ports.first, ep_port = ports.second;
  std::vector<std::unique_ptr<EngineCore>> engines;
  for (int rank = 0; rank < 2; ++rank) engines.push_back(make_engine());
  std::vector<RankLog> logs(2);
  std::vector<Status> statuses(2);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < 2; ++rank) {
    threads.emplace_back([&, rank] {
      protocol::Assign assign;
      assign.generation = 1;
      assign.rank = rank;
      assign.world_size = 2;
      assign.members = {"w0", "w1"};
      assign.control_store = {"127.0.0.1", control_port};
      assign.ep_store = {"127.0.0.1", ep_port};
      assign.placement = round_robin(2, 9);  // 2 redundant slots
      EngineCore& engine = *engines[rank];
      statuses[rank] = build(engine, assign);
      if (!statuses[rank].is_ok()) return;
      statuses[rank] = submit_all(engine, greedy_requests(100 * (rank + 1), 4, 7 + rank));
      if (!statuses[rank].is_ok()) return;
      statuses[rank] = step_until_idle(engine, logs[rank], [&](int step_idx) {
        if (rebalance && step_idx == rebalance_at[rank]) return engine.begin_rebalance(*rebalance);
        return Status::ok();
      });
    });
  }
  for (auto& thread : threads) thread.join();
  for (int rank = 0; rank < 2; ++rank) {
    INFO("rank " << rank << ": " << statuses[rank].to_string());
    REQUIRE(statuses[rank].is_ok());
  }
  if (placements_after != nullptr) {
    for (auto& engine : engines) placements_after->push_back(engine->placement());
  }
  return logs;
}

}  // namespace

TEST_CASE("engine eplb: the assigned placement is served, one that does not fit fails the build",
          "[engine_eplb]") {
  auto engine = make_engine();
  protocol::Assign wrong = one_rank_assign(1);
  SECTION("other ranks") {
    wrong.placement = round_robin(2, 8);
    Status status = engine->begin_generation(wrong);
    CHECK(status.code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(status.message(), Catch::Contains("has 2 ranks, the generation 1"));
  }
  SECTION("other layers") {
    auto placement = Placement::round_robin(3, 16, 1, 16);
    wrong.placement = placement.value();
    Status status = engine->begin_generation(wrong);
    CHECK(status.code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(status.message(),
               Catch::Contains("3 layers of 16 experts, the model tiny 4 layers"));
  }
  SECTION("an expert without a replica") {
    Placement placement = round_robin(1, 16);
    placement.phy2log[2][5] = 6;
    wrong.placement = placement;
    Status status = engine->begin_generation(wrong);
    CHECK(status.code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(status.message(), Catch::Contains("no replica of expert 5"));
  }
  SECTION("a valid one") {
    protocol::Assign assign = one_rank_assign(1);
    assign.placement = shuffled(1, 18, 3);
    REQUIRE(build(*engine, assign).is_ok());
    REQUIRE(engine->step(0).is_ok());
    CHECK(engine->placement().phy2log == assign.placement->phy2log);
    CHECK(engine->placement().slots_per_rank == 18);
  }
}

TEST_CASE("engine eplb: load reports count every routed token of their generation",
          "[engine_eplb]") {
  auto engine = make_engine();
  REQUIRE(build(*engine, one_rank_assign(1)).is_ok());
  const auto requests = greedy_requests(1, 6, 5);
  REQUIRE(submit_all(*engine, requests).is_ok());

  SECTION("every token of a run, the last report when the fleet goes idle") {
    RankLog log;
    REQUIRE(step_until_idle(*engine, log).is_ok());
    REQUIRE(!log.loads.empty());
    int64_t num_tokens = 0;
    for (const auto& request : requests) {
      num_tokens += request.prompt_ids.size() + request.params.max_tokens - 1;
    }
    for (int64_t routed : tokens_per_layer(log.loads)) CHECK(routed == num_tokens * kTopK);
    uint64_t num_steps = 0;
    for (size_t i = 0; i < log.loads.size(); ++i) {
      const auto& load = log.loads[i];
      CHECK(load.generation == 1);
      CHECK(load.rank == 0);
      REQUIRE(load.counts.size() == 4);
      CHECK(load.counts[0].size() == 16);
      if (i + 1 < log.loads.size()) CHECK(load.num_steps >= EngineCore::kLoadReportSteps);
      num_steps += load.num_steps;
    }
    CHECK(num_steps == static_cast<uint64_t>(log.num_steps - 1));  // the last step went idle
  }

  SECTION("the counts pending at a generation switch are dropped") {
    RankLog log;
    std::map<uint64_t, size_t> tokens_before;  // generated before the switch, per request
    std::vector<protocol::ExpertLoad> loads_before;
    for (int i = 0; i < 5; ++i) {  // well under a report's steps
      auto result = engine->step(0);
      REQUIRE(result.is_ok());
      CHECK(!result->expert_load);
      for (const auto& out : result->outputs) tokens_before[out.request_id] += 1;
    }
    REQUIRE(build(*engine, one_rank_assign(2)).is_ok());
    auto switched = engine->step(0);
    REQUIRE(switched.is_ok());
    REQUIRE(switched->switched);
    CHECK(!switched->expert_load);
    REQUIRE(step_until_idle(*engine, log).is_ok());
    int64_t num_tokens_after = 0;
    for (const auto& request : requests) {
      const int64_t before =
          tokens_before[request.request_id] == 0
              ? 0
              : request.prompt_ids.size() + tokens_before[request.request_id] - 1;
      num_tokens_after += request.prompt_ids.size() + request.params.max_tokens - 1 - before;
    }
    for (const auto& load : log.loads) CHECK(load.generation == 2);
    for (int64_t routed : tokens_per_layer(log.loads)) CHECK(routed == num_tokens_after * kTopK);
  }
}

TEST_CASE("engine eplb: begin_rebalance refuses plans that do not fit", "[engine_eplb]") {
  auto engine = make_engine();
  CHECK(engine->begin_rebalance(rebalance_to(round_robin(1, 16), 1, 1)).code() ==
        ErrorCode::kFailedPrecondition);  // not serving yet
  REQUIRE(build(*engine, one_rank_assign(1)).is_ok());
  REQUIRE(engine->step(0).is_ok());

  CHECK_THAT(engine->begin_rebalance(rebalance_to(shuffled(1, 16, 1), 1, 1, 2)).message(),
             Catch::Contains("is for generation 2, this rank serves generation 1"));
  CHECK_THAT(engine->begin_rebalance(rebalance_to(shuffled(2, 8, 1), 1, 1)).message(),
             Catch::Contains("has 2 ranks x 8 slots"));
  CHECK_THAT(engine->begin_rebalance(rebalance_to(shuffled(1, 17, 1), 1, 1)).message(),
             Catch::Contains("the generation serves 1 ranks x 16 slots"));
  Placement missing = shuffled(1, 16, 1);
  missing.phy2log[1][0] = missing.phy2log[1][1];
  CHECK_THAT(engine->begin_rebalance(rebalance_to(missing, 1, 1)).message(),
             Catch::Contains("is invalid"));
  CHECK_THAT(engine->begin_rebalance(rebalance_to(shuffled(1, 16, 1), 1, 0)).message(),
             Catch::Contains("at least 1"));

  REQUIRE(engine->begin_rebalance(rebalance_to(shuffled(1, 16, 1), 5, 1)).is_ok());
  CHECK_THAT(engine->begin_rebalance(rebalance_to(shuffled(1, 16, 2), 5, 1)).message(),
             Catch::Contains("not newer than plan 5"));
  CHECK(engine->begin_rebalance(rebalance_to(shuffled(1, 16, 2), 4, 1)).code() ==
        ErrorCode::kFailedPrecondition);
  CHECK(engine->begin_rebalance(rebalance_to(shuffled(1, 16, 2), 6, 1)).is_ok());  // replaces 5
}

TEST_CASE("engine eplb: one rank moves a plan while serving and while idle",
          "[engine_eplb][move]") {
  const auto requests = greedy_requests(1, 5, 9);
  RankLog reference;
  {
    auto engine = make_engine();
    REQUIRE(build(*engine, one_rank_assign(1)).is_ok());
    REQUIRE(submit_all(*engine, requests).is_ok());
    REQUIRE(step_until_idle(*engine, reference).is_ok());
  }
  auto engine = make_engine();
  REQUIRE(build(*engine, one_rank_assign(1)).is_ok());
  REQUIRE(submit_all(*engine, requests).is_ok());
  const Placement target = shuffled(1, 16, 4);
  RankLog log;
  REQUIRE(step_until_idle(*engine, log, [&](int step_idx) {
            return step_idx == 3 ? engine->begin_rebalance(rebalance_to(target, 1, 2))
                                 : Status::ok();
          }).is_ok());
  REQUIRE(log.dones.size() == 1);
  const auto& [done_step, done] = log.dones[0];
  INFO(done.error);
  CHECK(done.error.empty());
  CHECK(done_step == 4);  // layers 0-1 at step 3, 2-3 at step 4
  CHECK(done.plan_id == 1);
  CHECK(done.generation == 1);
  CHECK(done.longest_step_gap_ms > 0);
  CHECK(engine->placement().phy2log == target.phy2log);
  CHECK(log.outputs == reference.outputs);

  // An idle fleet moves without a forward step, then goes idle again.
  RankLog idle_log;
  REQUIRE(engine->begin_rebalance(rebalance_to(round_robin(1, 16), 2, 3)).is_ok());
  REQUIRE(step_until_idle(*engine, idle_log).is_ok());
  REQUIRE(idle_log.dones.size() == 1);
  CHECK(idle_log.dones[0].first == 1);
  CHECK(idle_log.dones[0].second.error.empty());
  CHECK(idle_log.num_steps == 3);
  CHECK(idle_log.loads.empty());
  CHECK(engine->placement().phy2log == round_robin(1, 16).phy2log);

  // And serves as before.
  RankLog again;
  auto more = greedy_requests(1, 5, 9);
  REQUIRE(submit_all(*engine, more).is_ok());
  REQUIRE(step_until_idle(*engine, again).is_ok());
  CHECK(again.outputs == reference.outputs);
}

TEST_CASE("engine eplb: two ranks start a plan together once both hold it, outputs unchanged",
          "[engine_eplb][move]") {
  const std::vector<RankLog> reference = run_two_ranks(std::nullopt, {-1, -1});
  const Placement target = shuffled(2, 9, 6);
  std::vector<Placement> placements;
  // Rank 0 holds the plan from step 2, rank 1 from step 5: nothing moves before step 5.
  const std::vector<RankLog> logs = run_two_ranks(rebalance_to(target, 1, 1), {2, 5}, &placements);
  uint64_t bytes_moved = 0;
  for (int rank = 0; rank < 2; ++rank) {
    INFO("rank " << rank);
    CHECK(logs[rank].outputs == reference[rank].outputs);
    REQUIRE(logs[rank].dones.size() == 1);
    const auto& [done_step, done] = logs[rank].dones[0];
    INFO(done.error);
    CHECK(done.error.empty());
    CHECK(done_step == 8);  // one layer at each of steps 5, 6, 7 and 8
    CHECK(done.rank == rank);
    CHECK(placements[rank].phy2log == target.phy2log);
    bytes_moved += done.bytes_moved;
  }
  CHECK(bytes_moved > 0);  // experts changed rank
}
