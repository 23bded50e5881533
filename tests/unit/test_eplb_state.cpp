// The coordinator's EPLB bookkeeping (EplbState), the expert layout it reads from config.json,
// the EPLB flags and metrics. The planner itself is tested in test_eplb.cpp.
#include <CLI/CLI.hpp>
#include <catch2/catch.hpp>

#include <fstream>

#include "eep/common/config.h"
#include "eep/coordinator/coordinator_config.h"
#include "eep/coordinator/eplb_state.h"
#include "eep/coordinator/expert_layout.h"
#include "eep/coordinator/metrics.h"
#include "scratch_dir.h"

using namespace eep;
using namespace eep::coordinator;
using namespace std::chrono_literals;
using Counts = std::vector<std::vector<int64_t>>;

namespace {

constexpr int kLayers = 2;
constexpr int kExperts = 4;
constexpr int kRanks = 2;
constexpr int kSlotsPerRank = 3;  // 2 redundant slots: round-robin holds 0 1 2 | 3 0 1

Placement initial_placement() {
  return Placement::round_robin(kLayers, kExperts, kRanks, kSlotsPerRank).value();
}

// counts[layer][slot] with `tokens` on every slot holding `logical` (in every layer), 1 elsewhere.
Counts counts_with_hot(const Placement& placement, int logical, int64_t tokens) {
  Counts counts(placement.num_layers, std::vector<int64_t>(placement.num_slots(), 1));
  for (int l = 0; l < placement.num_layers; ++l) {
    for (int s = 0; s < placement.num_slots(); ++s) {
      if (placement.logical_of(l, s) == logical) counts[l][s] = tokens;
    }
  }
  return counts;
}

protocol::ExpertLoad report(int64_t generation, int rank, uint64_t num_steps, Counts counts) {
  return protocol::ExpertLoad{generation, rank, num_steps, std::move(counts)};
}

protocol::RebalanceDone done(const PlannedRebalance& plan, int rank, uint64_t bytes, double seconds,
                             double gap_ms, std::string error = "") {
  protocol::RebalanceDone answer;
  answer.generation = plan.generation;
  answer.plan_id = plan.plan_id;
  answer.rank = rank;
  answer.bytes_moved = bytes;
  answer.seconds = seconds;
  answer.move_seconds = seconds / 2;  // the rest: serving steps between the moves
  answer.longest_step_gap_ms = gap_ms;
  answer.error = std::move(error);
  return answer;
}

EplbOptions options(bool enabled = true) {
  EplbOptions options;
  options.enabled = enabled;
  options.window_size = 10;
  options.step_interval = 8;
  options.layers_per_step = 1;
  options.rebalance_timeout = 5s;
  return options;
}

// Both ranks report `steps` steps with expert 2 (one replica, on rank 0) hot.
void feed_skewed(EplbState& state, int64_t generation, uint64_t steps) {
  for (int rank = 0; rank < kRanks; ++rank) {
    REQUIRE(
        state.add_load(report(generation, rank, steps, counts_with_hot(*state.placement(), 2, 100)))
            .is_ok());
  }
}

// An automatic check: the decision once the plan is computed; nullopt when none was due.
std::optional<PlanDecision> check_now(EplbState& state, EplbState::Clock::time_point now) {
  auto request = state.due_plan(now);
  if (!request) return std::nullopt;
  CHECK(state.stage() == EplbStage::kPlanning);
  CHECK(state.in_progress());
  auto decision = state.on_planned(plan(*request), now);
  REQUIRE(decision.is_ok());
  REQUIRE(decision.value());
  return *decision.value();
}

// A forced plan once computed (sent whatever it gains).
Result<PlannedRebalance> force_now(EplbState& state, EplbState::Clock::time_point now) {
  EEP_ASSIGN_OR_RETURN(PlanRequest request, state.force_plan(now));
  auto decision = state.on_planned(plan(request), now);
  REQUIRE(decision.is_ok());
  REQUIRE(decision.value());
  REQUIRE(decision.value()->send);
  return decision.value()->plan;
}

}  // namespace

TEST_CASE("the window keeps the last window_size steps per rank, dropping whole reports",
          "[eplb]") {
  EplbState state(options(false));
  state.reset(1, initial_placement());
  CHECK(state.window_steps() == 0);
  CHECK_FALSE(state.measured());
  CHECK_FALSE(state.info().balancedness);

  const Placement placement = initial_placement();
  // Reports of 4 steps: 4, 8, 12 steps kept; the 4th drops the oldest (12 still >= 10).
  for (int i = 0; i < 3; ++i) {
    REQUIRE(state.add_load(report(1, 0, 4, counts_with_hot(placement, 2, 10 + i))).is_ok());
  }
  CHECK(state.window_steps() == 12);
  REQUIRE(state.add_load(report(1, 0, 4, counts_with_hot(placement, 2, 13))).is_ok());
  CHECK(state.window_steps() == 12);
  // Logical load maps slots through phy2log: expert 0 and 1 have two slots each (1 token each
  // per report), expert 2 has 11 + 12 + 13 over the three reports kept.
  ExpertTokenCounts load = state.logical_load();
  REQUIRE(load.size() == kLayers);
  CHECK(load[0] == std::vector<int64_t>{6, 6, 36, 3});
  CHECK(load[1] == load[0]);

  // Rank 1's window is its own; the window reports the most steps any rank covers.
  REQUIRE(state.add_load(report(1, 1, 30, counts_with_hot(placement, 3, 5))).is_ok());
  CHECK(state.window_steps() == 30);
  load = state.logical_load();
  CHECK(load[0] == std::vector<int64_t>{8, 8, 37, 8});

  // The measured balancedness is eplb.h's on the logical load and the current placement.
  auto expected = balancedness(load, placement);
  REQUIRE(expected.is_ok());
  auto measured = state.measured();
  REQUIRE(measured);
  CHECK(measured->mean == Approx(expected->mean));
  CHECK(measured->per_layer == expected->per_layer);
  const protocol::EplbInfo info = state.info();
  CHECK_FALSE(info.enabled);
  CHECK(info.window_steps == 30);
  REQUIRE(info.balancedness);
  CHECK(*info.balancedness == Approx(expected->mean));
  CHECK(info.per_layer.size() == kLayers);
  CHECK_FALSE(info.in_progress);
}

TEST_CASE("bad and stale load reports", "[eplb]") {
  EplbState state(options());
  const Placement placement = initial_placement();
  // Without a placement (no model known) nothing is measured.
  REQUIRE(state.add_load(report(0, 0, 4, counts_with_hot(placement, 0, 1))).is_ok());
  CHECK(state.window_steps() == 0);

  state.reset(2, placement);
  CHECK(state.add_load(report(1, 0, 4, counts_with_hot(placement, 0, 1))).is_ok());  // stale
  CHECK(state.window_steps() == 0);

  auto bad_rank = state.add_load(report(2, 2, 4, counts_with_hot(placement, 0, 1)));
  CHECK(bad_rank.code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(bad_rank.message(), Catch::Contains("rank"));
  auto bad_shape = state.add_load(report(2, 0, 4, Counts(kLayers, std::vector<int64_t>(5, 1))));
  CHECK(bad_shape.code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(bad_shape.message(), Catch::Contains("2 layers x 6 slots"));
  auto bad_layers = state.add_load(report(2, 0, 4, Counts(1, std::vector<int64_t>(6, 1))));
  CHECK(bad_layers.code() == ErrorCode::kInvalidArgument);
  Counts negative = counts_with_hot(placement, 0, 1);
  negative[1][3] = -1;
  CHECK(state.add_load(report(2, 0, 4, negative)).code() == ErrorCode::kInvalidArgument);
  CHECK(state.window_steps() == 0);
}

TEST_CASE("a rebalance is due every step_interval steps of rank 0 and completes on every rank",
          "[eplb]") {
  EplbState state(options());
  state.reset(1, initial_placement());
  const auto now = EplbState::Clock::now();

  feed_skewed(state, 1, 4);
  CHECK_FALSE(state.due_plan(now));  // 4 of 8 steps

  feed_skewed(state, 1, 4);
  auto decision = check_now(state, now);
  REQUIRE(decision);
  REQUIRE(decision->send);
  const PlannedRebalance plan = decision->plan;
  CHECK(plan.slots_changed > 0);
  CHECK(plan.num_slots == kLayers * kRanks * kSlotsPerRank);
  CHECK(plan.plan_id == 1);
  CHECK(plan.generation == 1);
  CHECK(plan.window_steps == 8);
  // Expert 2 is hot with one replica on rank 0: rank 0 carries most of the load.
  CHECK(plan.current_balancedness < 0.6);
  CHECK(plan.predicted_balancedness > 0.95);
  CHECK(plan.placement.num_ranks == kRanks);
  CHECK(plan.placement.slots_per_rank == kSlotsPerRank);
  CHECK(plan.placement.validate().is_ok());
  CHECK(state.in_progress());
  CHECK(state.info().in_progress == 1u);

  // While experts move, reports are not counted (slots change meaning layer by layer), and no
  // second plan is due or can be forced.
  feed_skewed(state, 1, 100);
  CHECK(state.window_steps() == 8);
  CHECK_FALSE(state.due_plan(now));
  auto forced = state.force_plan(now);
  CHECK(forced.status().code() == ErrorCode::kFailedPrecondition);
  CHECK_THAT(forced.status().message(), Catch::Contains("in progress"));

  // Answers to another plan or generation, and repeated answers, do not count.
  PlannedRebalance other = plan;
  other.plan_id = 9;
  CHECK_FALSE(state.on_done(done(other, 0, 1, 1, 1)));
  other = plan;
  other.generation = 0;
  CHECK_FALSE(state.on_done(done(other, 0, 1, 1, 1)));
  CHECK_FALSE(state.on_done(done(plan, 0, 1000, 0.5, 12.0)));
  CHECK_FALSE(state.on_done(done(plan, 0, 1000, 0.5, 12.0)));
  auto outcome = state.on_done(done(plan, 1, 3000, 0.25, 30.0));
  REQUIRE(outcome);
  CHECK(outcome->status.is_ok());
  CHECK(outcome->bytes_moved == 4000);
  CHECK(outcome->seconds == 0.5);
  CHECK(outcome->move_seconds == 0.25);
  CHECK(outcome->longest_step_gap_ms == 30.0);
  CHECK(outcome->plan.plan_id == 1);

  // The plan's placement is current and the window restarts on it.
  CHECK_FALSE(state.in_progress());
  CHECK(state.placement()->phy2log == plan.placement.phy2log);
  CHECK(state.window_steps() == 0);
  const protocol::EplbInfo info = state.info();
  REQUIRE(info.last_rebalance);
  CHECK(info.last_rebalance->ok);
  CHECK(info.last_rebalance->plan_id == 1);
  CHECK(info.last_rebalance->bytes_moved == 4000);
  CHECK(info.last_rebalance->move_seconds == 0.25);
  CHECK(info.last_rebalance->before_balancedness == Approx(plan.current_balancedness));
  CHECK(info.last_rebalance->after_balancedness == Approx(plan.predicted_balancedness));

  // The same traffic on the new placement measures what was predicted.
  feed_skewed(state, 1, 4);
  REQUIRE(state.measured());
  CHECK(state.measured()->mean > 0.95);
}

TEST_CASE("a plan that does not beat the current placement is not sent", "[eplb]") {
  EplbState state(options());
  state.reset(1, initial_placement());
  const auto now = EplbState::Clock::now();
  // Expert 0 is hot but already has a replica on each rank: balanced as it is.
  for (int rank = 0; rank < kRanks; ++rank) {
    REQUIRE(
        state.add_load(report(1, rank, 8, counts_with_hot(initial_placement(), 0, 100))).is_ok());
  }
  auto decision = check_now(state, now);
  REQUIRE(decision);
  CHECK_FALSE(decision->send);
  CHECK_FALSE(state.in_progress());
  CHECK(decision->plan.predicted_balancedness <= decision->plan.current_balancedness + 0.01);
  // The next check is step_interval steps later.
  CHECK_FALSE(state.due_plan(now));
  // Forcing sends it anyway.
  auto forced = force_now(state, now);
  REQUIRE(forced.is_ok());
  CHECK(forced->plan_id == 1);
  CHECK(state.in_progress());
}

TEST_CASE("without --enable-eplb nothing is planned automatically, a forced plan still is",
          "[eplb]") {
  EplbState state(options(false));
  const auto now = EplbState::Clock::now();
  auto no_placement = state.force_plan(now);
  CHECK(no_placement.status().code() == ErrorCode::kFailedPrecondition);
  CHECK_THAT(no_placement.status().message(), Catch::Contains("--model"));

  state.reset(1, initial_placement());
  auto no_load = state.force_plan(now);
  CHECK(no_load.status().code() == ErrorCode::kFailedPrecondition);
  CHECK_THAT(no_load.status().message(), Catch::Contains("no expert load"));

  feed_skewed(state, 1, 50);
  CHECK_FALSE(state.due_plan(now));
  auto forced = force_now(state, now);
  REQUIRE(forced.is_ok());
  CHECK(forced->predicted_balancedness > forced->current_balancedness);
}

TEST_CASE("a failed or timed-out rebalance keeps the old placement", "[eplb]") {
  EplbState state(options());
  state.reset(1, initial_placement());
  const auto now = EplbState::Clock::now();
  feed_skewed(state, 1, 8);
  PlannedRebalance plan = check_now(state, now)->plan;

  CHECK_FALSE(state.on_done(done(plan, 1, 0, 0.1, 1.0, "peer 0 gone")));
  auto outcome = state.on_done(done(plan, 0, 500, 0.2, 2.0));
  REQUIRE(outcome);
  CHECK_FALSE(outcome->status.is_ok());
  CHECK_THAT(outcome->status.message(), Catch::Contains("rank 1"));
  CHECK_THAT(outcome->status.message(), Catch::Contains("peer 0 gone"));
  CHECK(state.placement()->phy2log == initial_placement().phy2log);
  CHECK(state.window_steps() == 8);  // the window on the old placement is still valid
  REQUIRE(state.info().last_rebalance);
  CHECK_FALSE(state.info().last_rebalance->ok);
  CHECK_THAT(state.info().last_rebalance->error, Catch::Contains("peer 0 gone"));

  // The next one, whose rank 1 never answers, times out.
  feed_skewed(state, 1, 8);
  plan = check_now(state, now)->plan;
  CHECK(plan.plan_id == 2);
  CHECK_FALSE(state.on_done(done(plan, 0, 500, 0.2, 2.0)));
  CHECK_FALSE(state.on_tick(now + 4s));
  outcome = state.on_tick(now + 5s);
  REQUIRE(outcome);
  CHECK(outcome->status.code() == ErrorCode::kDeadlineExceeded);
  CHECK_THAT(outcome->status.message(), Catch::Contains("rank(s) 1"));
  CHECK_FALSE(state.in_progress());
  CHECK(state.placement()->phy2log == initial_placement().phy2log);
  // A late answer is ignored.
  CHECK_FALSE(state.on_done(done(plan, 1, 500, 0.2, 2.0)));
}

TEST_CASE("a member lost while experts move fails the plan at once", "[eplb]") {
  EplbState state(options());
  state.reset(1, initial_placement());
  const auto now = EplbState::Clock::now();
  CHECK_FALSE(state.on_member_lost("w1: killed"));  // nothing moves
  feed_skewed(state, 1, 8);
  const PlannedRebalance plan = check_now(state, now)->plan;
  REQUIRE(state.stage() == EplbStage::kMoving);
  CHECK_FALSE(state.on_done(done(plan, 0, 500, 0.2, 2.0)));
  auto outcome = state.on_member_lost("w1: killed");
  REQUIRE(outcome);
  CHECK(outcome->status.code() == ErrorCode::kUnavailable);
  CHECK_THAT(outcome->status.message(), Catch::Contains("w1: killed"));
  CHECK(outcome->plan.plan_id == plan.plan_id);
  CHECK_FALSE(state.in_progress());
  CHECK(state.placement()->phy2log == initial_placement().phy2log);
  REQUIRE(state.info().last_rebalance);
  CHECK_FALSE(state.info().last_rebalance->ok);
  // The survivor's answer that comes after is ignored, and so is the deadline.
  CHECK_FALSE(state.on_done(done(plan, 1, 500, 0.2, 2.0)));
  CHECK_FALSE(state.on_tick(now + 10s));
}

TEST_CASE("a new generation resets the window and drops the plan in progress", "[eplb]") {
  EplbState state(options());
  state.reset(1, initial_placement());
  const auto now = EplbState::Clock::now();
  feed_skewed(state, 1, 8);
  PlannedRebalance plan = check_now(state, now)->plan;
  CHECK(state.reset(2, Placement::round_robin(kLayers, kExperts, 3, 2).value()) == plan.plan_id);
  CHECK_FALSE(state.in_progress());
  CHECK(state.generation() == 2);
  CHECK(state.window_steps() == 0);
  CHECK(state.placement()->num_ranks == 3);
  CHECK_FALSE(state.on_done(done(plan, 0, 1, 1, 1)));
  CHECK_FALSE(state.on_done(done(plan, 1, 1, 1, 1)));
  // Plan ids keep increasing across generations.
  for (int rank = 0; rank < 3; ++rank) {
    REQUIRE(state.add_load(report(2, rank, 8, counts_with_hot(*state.placement(), 1, 50))).is_ok());
  }
  auto forced = force_now(state, now);
  REQUIRE(forced.is_ok());
  CHECK(forced->plan_id == 2);
  CHECK(forced->generation == 2);
  // A generation without a placement (model unknown) measures nothing.
  CHECK(state.reset(3, std::nullopt) == 2u);
  CHECK_FALSE(state.placement());
  CHECK(state.logical_load().empty());
}

TEST_CASE("a plan is computed off the loop: the window keeps filling, stale results are dropped",
          "[eplb]") {
  EplbState state(options());
  state.reset(1, initial_placement());
  const auto now = EplbState::Clock::now();
  feed_skewed(state, 1, 8);
  auto request = state.due_plan(now);
  REQUIRE(request);
  CHECK(request->generation == 1);
  CHECK(request->window_steps == 8);
  CHECK(request->load == state.logical_load());
  CHECK_FALSE(request->forced);
  // Planning: reports still count (the placement has not changed), nothing else starts.
  CHECK(state.stage() == EplbStage::kPlanning);
  feed_skewed(state, 1, 2);
  CHECK(state.window_steps() == 10);
  CHECK_FALSE(state.due_plan(now));
  auto forced = state.force_plan(now);
  CHECK(forced.status().code() == ErrorCode::kFailedPrecondition);
  CHECK_THAT(forced.status().message(), Catch::Contains("being planned"));
  CHECK_FALSE(state.info().in_progress);  // no plan id until it is sent

  // A result for another request is not this one's.
  PlanResult other = plan(*request);
  other.request_id += 1;
  auto ignored = state.on_planned(other, now);
  REQUIRE(ignored.is_ok());
  CHECK_FALSE(ignored.value());
  CHECK(state.stage() == EplbStage::kPlanning);

  // A planner error returns to measuring.
  PlanResult failed = plan(*request);
  failed.plan = error(ErrorCode::kInvalidArgument, "broken window");
  CHECK_FALSE(state.on_planned(failed, now).is_ok());
  CHECK(state.stage() == EplbStage::kMeasuring);

  // A plan not wanted any more (a scale started): back to measuring, results ignored.
  feed_skewed(state, 1, 8);
  request = state.due_plan(now);
  REQUIRE(request);
  state.drop_planning();
  CHECK(state.stage() == EplbStage::kMeasuring);
  CHECK_FALSE(state.on_planned(plan(*request), now).value());
  CHECK_FALSE(state.due_plan(now));  // the next check is step_interval steps later

  // A new generation while planning: the result that comes later is dropped.
  feed_skewed(state, 1, 8);
  request = state.due_plan(now);
  REQUIRE(request);
  state.reset(2, initial_placement());
  CHECK(state.stage() == EplbStage::kMeasuring);
  auto stale = state.on_planned(plan(*request), now);
  REQUIRE(stale.is_ok());
  CHECK_FALSE(stale.value());
  CHECK(state.placement()->phy2log == initial_placement().phy2log);
}

TEST_CASE("the EPLB stages move only along the transition table", "[eplb]") {
  using S = EplbStage;
  const S all[] = {S::kMeasuring, S::kPlanning, S::kMoving};
  int allowed = 0;
  for (S from : all) {
    for (S to : all) allowed += eplb_transition_allowed(from, to);
  }
  CHECK(allowed == 4);
  CHECK(eplb_transition_allowed(S::kMeasuring, S::kPlanning));
  CHECK(eplb_transition_allowed(S::kPlanning, S::kMoving));
  CHECK(eplb_transition_allowed(S::kPlanning, S::kMeasuring));
  CHECK(eplb_transition_allowed(S::kMoving, S::kMeasuring));
  CHECK_FALSE(eplb_transition_allowed(S::kMeasuring, S::kMoving));
  CHECK(std::string(to_string(S::kPlanning)) == "planning");
}

TEST_CASE("the expert layout comes from config.json", "[eplb]") {
  using nlohmann::json;
  auto layout = parse_expert_layout(json{{"num_hidden_layers", 48}, {"num_experts", 128}}, "c", 2);
  REQUIRE(layout.is_ok());
  CHECK(layout->num_layers == 48);
  CHECK(layout->num_experts == 128);
  CHECK(layout->slots_per_rank(3) == 44);  // ceil(130 / 3)
  CHECK(layout->slots_per_rank(130) == 1);
  auto placement = layout->initial_placement(3);
  REQUIRE(placement.is_ok());
  CHECK(placement->phy2log == Placement::round_robin(48, 128, 3, 44)->phy2log);
  CHECK_FALSE(layout->initial_placement(0).is_ok());

  // transformers 5.x spells it num_local_experts.
  layout = parse_expert_layout(json{{"num_hidden_layers", 2}, {"num_local_experts", 8}}, "c", 0);
  REQUIRE(layout.is_ok());
  CHECK(layout->num_experts == 8);

  auto missing = parse_expert_layout(json{{"num_hidden_layers", 2}}, "dir/config.json", 0);
  CHECK(missing.status().code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(missing.status().message(), Catch::Contains("dir/config.json"));
  CHECK_THAT(missing.status().message(), Catch::Contains("num_local_experts"));
  auto wrong = parse_expert_layout(json{{"num_hidden_layers", "2"}, {"num_experts", 8}}, "c", 0);
  CHECK_THAT(wrong.status().message(), Catch::Contains("num_hidden_layers"));
  CHECK_FALSE(
      parse_expert_layout(json{{"num_hidden_layers", 0}, {"num_experts", 8}}, "c", 0).is_ok());
  CHECK_FALSE(parse_expert_layout(json::array(), "c", 0).is_ok());
  CHECK_FALSE(
      parse_expert_layout(json{{"num_hidden_layers", 2}, {"num_experts", 8}}, "c", -1).is_ok());

  const auto dir = eep::testing::process_scratch_dir("eep_eplb_state") / "model";
  std::filesystem::create_directories(dir);
  auto absent = read_expert_layout(dir.string(), 0);
  CHECK(absent.status().code() == ErrorCode::kNotFound);
  CHECK_THAT(absent.status().message(), Catch::Contains("config.json"));
  std::ofstream(dir / "config.json") << "{not json";
  CHECK(read_expert_layout(dir.string(), 0).status().code() == ErrorCode::kInvalidArgument);
  std::ofstream(dir / "config.json") << R"({"num_hidden_layers": 4, "num_experts": 16})";
  auto read = read_expert_layout(dir.string(), 0);
  REQUIRE(read.is_ok());
  CHECK(read->num_layers == 4);
}

TEST_CASE("EPLB flags: defaults and values", "[eplb]") {
  auto parse = [](std::vector<std::string> args) {
    CoordinatorConfig config;
    CLI::App app;
    add_coordinator_options(app, config);
    args.insert(args.begin(), "eep-coordinator");
    std::vector<const char*> argv;
    for (const auto& arg : args) argv.push_back(arg.c_str());
    auto exit_code = parse_args(app, static_cast<int>(argv.size()), argv.data());
    return std::make_pair(config, exit_code);
  };
  auto [defaults, ok] = parse({});
  CHECK_FALSE(ok);
  CHECK_FALSE(defaults.enable_eplb);
  CHECK(defaults.eplb_window_size == 1000);
  CHECK(defaults.eplb_step_interval == 3000);
  CHECK(defaults.num_redundant_experts == 0);
  CHECK(defaults.eplb_layers_per_step == 4);
  CHECK(defaults.eplb_min_gain == 0.01);
  CHECK(defaults.eplb_balance_slack == 0.01);
  CHECK(defaults.eplb_max_moved_fraction == 1.0);
  CHECK(defaults.eplb_planner_threads == 0);
  CHECK(defaults.eplb_test_load.empty());
  auto [tuned, ok3] = parse({"--eplb-min-gain", "0.05", "--eplb-balance-slack", "0",
                             "--eplb-max-moved-fraction", "0.1", "--eplb-planner-threads", "2"});
  CHECK_FALSE(ok3);
  CHECK(tuned.eplb_min_gain == 0.05);
  CHECK(tuned.eplb_balance_slack == 0.0);
  CHECK(tuned.eplb_max_moved_fraction == 0.1);
  CHECK(tuned.eplb_planner_threads == 2);
  CHECK(parse({"--eplb-max-moved-fraction", "1.5"}).second.value_or(0) != 0);
  CHECK(parse({"--eplb-balance-slack", "-0.1"}).second.value_or(0) != 0);
  auto [set, ok2] = parse({"--enable-eplb", "--eplb-window-size", "50", "--eplb-step-interval",
                           "20", "--num-redundant-experts", "8", "--eplb-layers-per-step", "2"});
  CHECK_FALSE(ok2);
  CHECK(set.enable_eplb);
  CHECK(set.eplb_window_size == 50);
  CHECK(set.eplb_step_interval == 20);
  CHECK(set.num_redundant_experts == 8);
  CHECK(set.eplb_layers_per_step == 2);
  CHECK(parse({"--eplb-window-size", "0"}).second.value_or(0) != 0);
  CHECK(parse({"--num-redundant-experts", "-1"}).second.value_or(0) != 0);
}

TEST_CASE("EPLB metrics", "[eplb]") {
  MetricsRegistry registry;
  EplbMetrics metrics(registry);
  metrics.set_balancedness(0.75, {0.5, 1.0});
  metrics.count_rebalance(4096, 12.5);
  metrics.count_rebalance(1024, 7.0);
  metrics.count_failed_rebalance();
  const std::string text = registry.render();
  CHECK_THAT(text, Catch::Contains("eep_eplb_balancedness 0.75\n"));
  CHECK_THAT(text, Catch::Contains("eep_eplb_layer_balancedness{layer=\"0\"} 0.5\n"));
  CHECK_THAT(text, Catch::Contains("eep_eplb_layer_balancedness{layer=\"1\"} 1\n"));
  CHECK_THAT(text, Catch::Contains("eep_eplb_rebalances_total 2\n"));
  CHECK_THAT(text, Catch::Contains("eep_eplb_rebalances_failed_total 1\n"));
  CHECK_THAT(text, Catch::Contains("eep_eplb_bytes_moved_total 5120\n"));
  CHECK_THAT(text, Catch::Contains("eep_eplb_last_longest_step_gap_ms 7\n"));
  CHECK_THAT(text, Catch::Contains("# TYPE eep_eplb_rebalances_total counter"));
}
