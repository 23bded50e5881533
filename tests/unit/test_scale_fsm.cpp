#include <map>

#include <catch2/catch.hpp>

#include "eep/coordinator/scale_fsm.h"

using namespace eep;
using namespace eep::coordinator;
using namespace std::chrono_literals;

namespace {

struct ScaleFixture {
  explicit ScaleFixture(bool weights_from_peers = true)
      : limits{8, true, "here", 1000ms, std::nullopt, 5000ms, weights_from_peers} {}
  Membership membership;
  PortAllocator ports = PortAllocator::create({{"*", 100, 109}}).value();
  ScaleLimits limits;
  ScaleFsm fsm{membership, ports, limits};
  Clock::time_point now = Clock::now();

  void register_worker(const std::string& id) {
    WorkerRecord record;
    record.id = id;
    record.host = "here";
    REQUIRE(membership.add(record, now).is_ok());
  }

  // Registers the launched workers, acks every assignment, reports the leaving ranks drained
  // and exited; returns the actions seen.
  std::vector<ScaleAction> complete(std::vector<ScaleAction> actions) {
    std::vector<ScaleAction> seen = actions;
    for (size_t i = 0; i < seen.size(); ++i) {
      std::vector<ScaleAction> more;
      if (auto* launch = std::get_if<LaunchWorker>(&seen[i])) {
        register_worker(launch->worker_id);
        more = fsm.on_registered(launch->worker_id, now);
      } else if (auto* assign = std::get_if<SendAssign>(&seen[i])) {
        more = fsm.on_assign_ack(assign->worker_id, assign->assign.generation, now);
      } else if (auto* shutdown = std::get_if<SendShutdown>(&seen[i])) {
        more = fsm.on_worker_gone(shutdown->worker_id, "exited", now);
        membership.remove(shutdown->worker_id);
      }
      if (fsm.stage() == ScaleStage::kDrainLeaving) {
        auto drained = fsm.on_leaving_drained(now);
        more.insert(more.end(), drained.begin(), drained.end());
      }
      seen.insert(seen.end(), more.begin(), more.end());
    }
    return seen;
  }

  // Starts a scale and acks every assignment, stopping before the leaving ranks drain.
  std::vector<ScaleAction> ack_all(int to_dp) {
    auto started = fsm.start(to_dp, {}, now);
    REQUIRE(started.is_ok());
    std::vector<ScaleAction> seen;
    for (const ScaleAction& action : started.value()) {
      if (auto* assign = std::get_if<SendAssign>(&action)) {
        auto more = fsm.on_assign_ack(assign->worker_id, assign->assign.generation, now);
        seen.insert(seen.end(), more.begin(), more.end());
      }
    }
    return seen;
  }

  std::vector<std::string> active_ids() const {
    std::vector<std::string> ids;
    for (const WorkerRecord* w : membership.active_by_rank()) ids.push_back(w->id);
    return ids;
  }
};

template <typename T>
int count(const std::vector<ScaleAction>& actions) {
  int n = 0;
  for (const auto& a : actions) n += std::holds_alternative<T>(a);
  return n;
}

}  // namespace

TEST_CASE("scale up launches, assigns and switches and scale down retires the highest ranks",
          "[scale]") {
  ScaleFixture f;
  auto started = f.fsm.start(2, {}, f.now);
  REQUIRE(started.is_ok());
  CHECK(count<LaunchWorker>(started.value()) == 2);
  CHECK(f.fsm.running());
  auto seen = f.complete(started.value());
  CHECK(count<SendAssign>(seen) == 2);
  CHECK(f.fsm.stage() == ScaleStage::kSucceeded);
  CHECK(f.active_ids() == std::vector<std::string>{"w0", "w1"});
  CHECK(f.membership.generation() == 1);
  CHECK(f.ports.num_live() == 2);

  seen = f.complete(f.fsm.start(4, {"w0", "w1"}, f.now).value());
  CHECK(f.active_ids() == std::vector<std::string>{"w0", "w1", "w2", "w3"});
  CHECK(f.membership.generation() == 2);
  CHECK(f.ports.num_live() == 2);  // generation 1's ports went back

  seen = f.complete(f.fsm.start(2, {}, f.now).value());
  CHECK(count<SendShutdown>(seen) == 2);
  CHECK(f.active_ids() == std::vector<std::string>{"w0", "w1"});
  CHECK(f.membership.find("w3") == nullptr);
  CHECK(f.fsm.stage() == ScaleStage::kSucceeded);
  auto info = f.fsm.info(f.now);
  CHECK(info.state == "succeeded");
  CHECK(info.from_dp == 4);
  CHECK(info.to_dp == 2);
  REQUIRE(info.timeline.size() == 4);
  CHECK(info.timeline[2].stage == "DRAIN_LEAVING");
  CHECK(info.timeline[3].stage == "RETIRE_LEAVING");
}

TEST_CASE("spares are used before launching", "[scale]") {
  ScaleFixture f;
  f.register_worker("spare-a");
  auto started = f.fsm.start(2, {}, f.now);
  REQUIRE(started.is_ok());
  CHECK(count<LaunchWorker>(started.value()) == 1);
  CHECK(f.membership.find("spare-a")->state == WorkerState::kJoining);
  f.complete(started.value());
  CHECK(f.active_ids() == std::vector<std::string>{"spare-a", "w0"});
}

TEST_CASE("impossible scale requests are refused and change nothing", "[scale]") {
  ScaleFixture f;
  f.complete(f.fsm.start(1, {}, f.now).value());
  for (int dp : {0, -1}) {
    auto refused = f.fsm.start(dp, {}, f.now);
    REQUIRE_FALSE(refused.is_ok());
    CHECK(refused.status().code() == ErrorCode::kInvalidArgument);
  }
  auto too_many = f.fsm.start(100, {"w0"}, f.now);
  REQUIRE_FALSE(too_many.is_ok());
  CHECK(too_many.status().code() == ErrorCode::kResourceExhausted);
  CHECK_THAT(too_many.status().message(), Catch::Contains("max-workers"));
  CHECK(f.active_ids() == std::vector<std::string>{"w0"});
  CHECK(f.ports.num_live() == 2);

  // Same size: nothing to do.
  auto same = f.fsm.start(1, {"w0"}, f.now);
  REQUIRE(same.is_ok());
  CHECK(same->empty());
  CHECK_FALSE(f.fsm.running());

  // One at a time.
  REQUIRE(f.fsm.start(2, {"w0"}, f.now).is_ok());
  auto second = f.fsm.start(3, {"w0"}, f.now);
  REQUIRE_FALSE(second.is_ok());
  CHECK(second.status().code() == ErrorCode::kFailedPrecondition);
  CHECK_THAT(second.status().message(), Catch::Contains("already running"));
}

TEST_CASE("port exhaustion refuses the scale with a clear error", "[scale]") {
  ScaleFixture f;
  f.ports = PortAllocator::create({{"*", 100, 102}}).value();
  f.complete(f.fsm.start(1, {}, f.now).value());
  auto refused = f.fsm.start(2, {"w0"}, f.now);
  REQUIRE_FALSE(refused.is_ok());
  CHECK(refused.status().code() == ErrorCode::kResourceExhausted);
  CHECK_THAT(refused.status().message(), Catch::Contains("ports exhausted"));
  CHECK(f.ports.num_live() == 2);  // the one port it did get went back
  CHECK_FALSE(f.fsm.running());
}

TEST_CASE("a stage past its deadline rolls back to the old generation", "[scale]") {
  ScaleFixture f;
  f.complete(f.fsm.start(2, {}, f.now).value());
  auto started = f.fsm.start(3, {"w0", "w1"}, f.now);
  REQUIRE(started.is_ok());
  REQUIRE(count<LaunchWorker>(started.value()) == 1);
  CHECK(f.fsm.on_tick(f.now + 500ms).empty());
  auto rollback = f.fsm.on_tick(f.now + 1500ms);
  CHECK(count<StopWorker>(rollback) == 1);  // the launched worker that never came
  CHECK(f.fsm.stage() == ScaleStage::kFailed);
  CHECK_THAT(f.fsm.info(f.now).reason, Catch::Contains("deadline"));
  CHECK(f.active_ids() == std::vector<std::string>{"w0", "w1"});
  CHECK(f.membership.generation() == 1);
  CHECK(f.ports.num_live() == 2);
  // The next scale works.
  f.complete(f.fsm.start(3, {}, f.now).value());
  CHECK(f.active_ids().size() == 3);
}

TEST_CASE("a new worker dying during the scale rolls back and old members are re-told", "[scale]") {
  ScaleFixture f;
  f.complete(f.fsm.start(2, {}, f.now).value());
  auto started = f.fsm.start(3, {"w0", "w1"}, f.now);
  REQUIRE(started.is_ok());
  f.register_worker("w2");
  auto assigns = f.fsm.on_registered("w2", f.now);
  CHECK(count<SendAssign>(assigns) == 3);
  REQUIRE(f.membership.transition("w2", WorkerState::kDead, "killed", f.now).is_ok());
  auto rollback = f.fsm.on_worker_gone("w2", "killed by signal 9", f.now);
  CHECK(f.fsm.stage() == ScaleStage::kFailed);
  CHECK_THAT(f.fsm.info(f.now).reason, Catch::Contains("w2"));
  // w0 and w1 are told generation 1 again.
  int reassigned = 0;
  for (const auto& action : rollback) {
    if (auto* assign = std::get_if<SendAssign>(&action)) {
      CHECK(assign->assign.generation == 1);
      ++reassigned;
    }
  }
  CHECK(reassigned == 2);
  CHECK(f.active_ids() == std::vector<std::string>{"w0", "w1"});
  CHECK(f.ports.num_live() == 2);
}

TEST_CASE("with a known model every Assign carries its generation's placement", "[scale]") {
  ScaleFixture f;
  ExpertLayout experts;
  experts.num_layers = 2;
  experts.num_experts = 6;
  experts.num_redundant_experts = 1;
  ScaleLimits limits = f.limits;
  limits.experts = experts;
  ScaleFsm fsm{f.membership, f.ports, limits};
  ScaleFixture* fixture = &f;
  auto complete = [&](std::vector<ScaleAction> actions) {
    std::vector<ScaleAction> seen = actions;
    for (size_t i = 0; i < seen.size(); ++i) {
      std::vector<ScaleAction> more;
      if (auto* launch = std::get_if<LaunchWorker>(&seen[i])) {
        fixture->register_worker(launch->worker_id);
        more = fsm.on_registered(launch->worker_id, fixture->now);
      } else if (auto* assign = std::get_if<SendAssign>(&seen[i])) {
        more = fsm.on_assign_ack(assign->worker_id, assign->assign.generation, fixture->now);
      } else if (auto* shutdown = std::get_if<SendShutdown>(&seen[i])) {
        more = fsm.on_worker_gone(shutdown->worker_id, "exited", fixture->now);
        fixture->membership.remove(shutdown->worker_id);
      }
      seen.insert(seen.end(), more.begin(), more.end());
    }
    return seen;
  };
  CHECK_FALSE(fsm.current_placement());
  auto seen = complete(fsm.start(2, {}, f.now).value());
  for (const auto& action : seen) {
    if (auto* assign = std::get_if<SendAssign>(&action)) {
      REQUIRE(assign->assign.placement);
      const Placement& placement = *assign->assign.placement;
      CHECK(placement.num_ranks == 2);
      CHECK(placement.slots_per_rank == 4);  // ceil((6 + 1) / 2)
      CHECK(placement.phy2log == Placement::round_robin(2, 6, 2, 4)->phy2log);
    }
  }
  REQUIRE(fsm.current_placement());
  CHECK(fsm.current_placement()->num_ranks == 2);

  // A rebalance moved generation 1; a rollback re-tells that placement, not round-robin.
  Placement moved = *fsm.current_placement();
  std::swap(moved.phy2log[0][0], moved.phy2log[0][7]);
  fsm.set_current_placement(moved);
  auto started = fsm.start(3, {"w0", "w1"}, f.now);
  REQUIRE(started.is_ok());
  f.register_worker("w2");
  for (const auto& action : fsm.on_registered("w2", f.now)) {
    const auto& assign = std::get<SendAssign>(action).assign;
    REQUIRE(assign.placement);
    CHECK(assign.placement->num_ranks == 3);
    CHECK(assign.placement->slots_per_rank == 3);  // ceil(7 / 3)
  }
  REQUIRE(f.membership.transition("w2", WorkerState::kDead, "killed", f.now).is_ok());
  int reassigned = 0;
  for (const auto& action : fsm.on_worker_gone("w2", "killed", f.now)) {
    if (auto* assign = std::get_if<SendAssign>(&action)) {
      REQUIRE(assign->assign.placement);
      CHECK(assign->assign.placement->phy2log == moved.phy2log);
      ++reassigned;
    }
  }
  CHECK(reassigned == 2);
  CHECK(fsm.current_placement()->phy2log == moved.phy2log);
}

namespace {

std::vector<std::string> stages_of(const protocol::ScaleInfo& info) {
  std::vector<std::string> stages;
  for (const auto& timing : info.timeline) stages.push_back(timing.stage);
  return stages;
}

std::vector<std::string> migrated(const std::vector<ScaleAction>& actions) {
  std::vector<std::string> ids;
  for (const auto& action : actions) {
    if (auto* migrate = std::get_if<MigrateRequests>(&action)) ids.push_back(migrate->worker_id);
  }
  return ids;
}

}  // namespace

TEST_CASE("a scale-down drains its leaving ranks from acceptance and switches once they are empty",
          "[scale]") {
  ScaleFixture f;
  f.complete(f.fsm.start(3, {}, f.now).value());
  CHECK(f.fsm.draining().empty());

  auto started = f.fsm.start(1, {}, f.now);
  REQUIRE(started.is_ok());
  // New requests avoid the leaving ranks from now on; they stay ACTIVE in generation 1.
  CHECK(f.fsm.draining() == std::vector<std::string>{"w1", "w2"});
  CHECK(f.active_ids() == std::vector<std::string>{"w0", "w1", "w2"});
  // w0 builds generation 2; w1 and w2 hand over the weights only they hold (rank -1).
  REQUIRE(count<SendAssign>(started.value()) == 3);
  for (const ScaleAction& action : started.value()) {
    const auto& send = std::get<SendAssign>(action);
    CHECK(send.assign.rank == (send.worker_id == "w0" ? 0 : -1));
    CHECK(send.assign.world_size == 1);
    CHECK(send.assign.previous_members == std::vector<std::string>{"w0", "w1", "w2"});
  }
  auto after_acks = f.fsm.on_assign_ack("w0", 2, f.now);
  CHECK(after_acks.empty());
  CHECK(f.fsm.stage() == ScaleStage::kDrainLeaving);
  CHECK(f.fsm.info(f.now).stage == "DRAIN_LEAVING");
  CHECK(f.fsm.info(f.now).state == "running");
  CHECK(f.membership.generation() == 1);
  // Not a rollback: the drain has its own deadline (5 s by default), the stage timeout is 1 s.
  CHECK(f.fsm.on_tick(f.now + 1500ms).empty());
  CHECK(f.fsm.stage() == ScaleStage::kDrainLeaving);

  f.now += 2s;
  auto switched = f.fsm.on_leaving_drained(f.now);
  CHECK(f.fsm.stage() == ScaleStage::kRetireLeaving);
  CHECK(f.membership.generation() == 2);
  CHECK(f.active_ids() == std::vector<std::string>{"w0"});
  CHECK(count<SendSwitch>(switched) == 3);
  CHECK(count<SendShutdown>(switched) == 2);
  // Nothing runs there, so the router moves nothing; asked anyway (it is the same at a deadline).
  CHECK(migrated(switched) == std::vector<std::string>{"w1", "w2"});
  for (const char* id : {"w1", "w2"}) {
    CHECK(f.membership.find(id)->state == WorkerState::kLeaving);
    f.fsm.on_worker_gone(id, "exited", f.now);
  }
  CHECK(f.fsm.stage() == ScaleStage::kSucceeded);
  CHECK(f.fsm.draining().empty());
  const auto info = f.fsm.info(f.now);
  CHECK(stages_of(info) ==
        std::vector<std::string>{"WAIT_WORKERS", "WAIT_ACKS", "DRAIN_LEAVING", "RETIRE_LEAVING"});
  CHECK(info.timeline[2].seconds == Approx(2.0));
  // Outside DRAIN_LEAVING the drained event changes nothing.
  CHECK(f.fsm.on_leaving_drained(f.now).empty());
  CHECK(f.fsm.stage() == ScaleStage::kSucceeded);
}

TEST_CASE("at the drain deadline a scale-down switches and migrates what still runs", "[scale]") {
  ScaleFixture f;
  f.limits.drain_timeout = 200ms;
  ScaleFsm fsm{f.membership, f.ports, f.limits};
  ScaleFixture* fixture = &f;
  // Generation 1 of 2 ranks, built by hand with this fsm.
  auto started = fsm.start(2, {}, f.now);
  REQUIRE(started.is_ok());
  for (const auto& action : started.value()) {
    fixture->register_worker(std::get<LaunchWorker>(action).worker_id);
    for (const auto& assign : fsm.on_registered(std::get<LaunchWorker>(action).worker_id, f.now)) {
      fsm.on_assign_ack(std::get<SendAssign>(assign).worker_id, 1, f.now);
    }
  }
  REQUIRE(fsm.stage() == ScaleStage::kSucceeded);

  REQUIRE(fsm.start(1, {}, f.now).is_ok());
  CHECK(fsm.draining() == std::vector<std::string>{"w1"});
  CHECK(fsm.on_assign_ack("w0", 2, f.now).empty());
  REQUIRE(fsm.stage() == ScaleStage::kDrainLeaving);
  CHECK(fsm.on_tick(f.now + 150ms).empty());
  auto at_deadline = fsm.on_tick(f.now + 250ms);
  CHECK(fsm.stage() == ScaleStage::kRetireLeaving);
  CHECK(migrated(at_deadline) == std::vector<std::string>{"w1"});
  // The migration comes before the switch orders: the requests reach the staying ranks at once.
  REQUIRE_FALSE(at_deadline.empty());
  CHECK(std::holds_alternative<MigrateRequests>(at_deadline.front()));
  CHECK(f.membership.generation() == 2);
  CHECK(f.membership.find("w1")->state == WorkerState::kLeaving);
  fsm.on_worker_gone("w1", "exited", f.now + 300ms);
  CHECK(fsm.stage() == ScaleStage::kSucceeded);
  CHECK(fsm.info(f.now).timeline[2].stage == "DRAIN_LEAVING");
  CHECK(fsm.info(f.now).timeline[2].seconds == Approx(0.25));
}

TEST_CASE("with no drain time a scale-down switches and migrates as soon as g+1 is built",
          "[scale]") {
  ScaleFixture f;
  f.complete(f.fsm.start(2, {}, f.now).value());
  f.limits.drain_timeout = 0ms;
  ScaleFsm fsm{f.membership, f.ports, f.limits};
  // This fsm knows generation 1 only from the membership, which is all a scale-down needs.
  REQUIRE(fsm.start(1, {}, f.now).is_ok());
  auto switched = fsm.on_assign_ack("w0", 2, f.now);
  CHECK(fsm.stage() == ScaleStage::kRetireLeaving);
  CHECK(migrated(switched) == std::vector<std::string>{"w1"});
  CHECK(fsm.info(f.now).timeline.back().stage == "DRAIN_LEAVING");
  CHECK(fsm.info(f.now).timeline.back().seconds == 0);
}

TEST_CASE("a staying rank lost while draining rolls back and the leaving ranks serve again",
          "[scale]") {
  ScaleFixture f;
  f.complete(f.fsm.start(3, {}, f.now).value());
  f.ack_all(2);
  REQUIRE(f.fsm.stage() == ScaleStage::kDrainLeaving);
  CHECK(f.fsm.draining() == std::vector<std::string>{"w2"});
  REQUIRE(f.membership.transition("w1", WorkerState::kDead, "killed", f.now).is_ok());
  auto rollback = f.fsm.on_worker_gone("w1", "killed by signal 9", f.now);
  CHECK(f.fsm.stage() == ScaleStage::kFailed);
  CHECK_THAT(f.fsm.info(f.now).reason, Catch::Contains("DRAIN_LEAVING"));
  CHECK(f.fsm.draining().empty());  // w2 takes requests again
  CHECK(migrated(rollback).empty());
  CHECK(f.membership.generation() == 1);
  CHECK(f.membership.find("w2")->state == WorkerState::kActive);
  // Generation 1 lost w1: nobody is told it again (it cannot serve); the fleet recovers next.
  CHECK(count<SendAssign>(rollback) == 0);
}

TEST_CASE(
    "a leaving rank that dies while draining rolls the scale back and its generation is "
    "not re-told",
    "[scale]") {
  ScaleFixture f;
  f.complete(f.fsm.start(3, {}, f.now).value());
  f.ack_all(1);
  REQUIRE(f.fsm.stage() == ScaleStage::kDrainLeaving);
  REQUIRE(f.membership.transition("w2", WorkerState::kDead, "killed", f.now).is_ok());
  // w2 still served generation 1 with w0 and w1 (the switch to 2 happens at a step of 1): their
  // collectives break, so they cannot switch; the fleet recovers from generation 1 instead.
  auto rollback = f.fsm.on_worker_gone("w2", "killed", f.now);
  CHECK(f.fsm.stage() == ScaleStage::kFailed);
  CHECK(count<SendAssign>(rollback) == 0);
  CHECK(migrated(rollback).empty());
  CHECK(f.active_ids() == std::vector<std::string>{"w0", "w1"});
}

// Fault tolerance (docs/fault_tolerance.md): the recovery of a generation that lost a member.

// Assigns of `actions`, by worker id.
static std::map<std::string, protocol::Assign> assigns_of(const std::vector<ScaleAction>& actions) {
  std::map<std::string, protocol::Assign> assigns;
  for (const auto& action : actions) {
    if (auto* assign = std::get_if<SendAssign>(&action)) {
      assigns[assign->worker_id] = assign->assign;
    }
  }
  return assigns;
}

// Worker `lost` of the live generation dies: the generation is broken and the recovery starts.
// What the recovery's start does.
static std::vector<ScaleAction> recover_without(ScaleFixture& f, const std::string& lost) {
  REQUIRE(f.membership.transition(lost, WorkerState::kDead, "killed", f.now).is_ok());
  f.fsm.on_generation_broken(lost + " lost", f.now);
  auto started = f.fsm.start_recovery(f.now);
  REQUIRE(started.is_ok());
  return std::move(started).value();
}

TEST_CASE(
    "a recovery rebuilds the survivors in rank order at the same size, with the weights they kept",
    "[scale][recovery]") {
  ScaleFixture f;
  f.complete(f.fsm.start(3, {}, f.now).value());
  REQUIRE(f.membership.transition("w1", WorkerState::kDead, "killed", f.now).is_ok());
  CHECK(f.fsm.on_worker_gone("w1", "killed", f.now).empty());  // no scale runs
  CHECK(f.fsm.on_generation_broken("w1 lost", f.now).empty());
  auto started = f.fsm.start_recovery(f.now);
  REQUIRE(started.is_ok());
  CHECK(f.fsm.kind() == ScaleKind::kRecover);
  CHECK(count<LaunchWorker>(started.value()) == 0);
  const auto assigns = assigns_of(started.value());
  REQUIRE(assigns.size() == 2);
  CHECK(assigns.at("w0").rank == 0);
  CHECK(assigns.at("w2").rank == 1);
  for (const auto& [id, assign] : assigns) {
    INFO(id);
    CHECK(assign.recovery);
    CHECK(assign.generation == 2);
    CHECK(assign.world_size == 2);
    // The survivors send what they kept of generation 1; w1, not a member, sends nothing.
    CHECK(assign.previous_members == std::vector<std::string>{"w0", "w1", "w2"});
    CHECK(assign.previous_placement.has_value() == f.fsm.current_placement().has_value());
  }
  f.complete(started.value());
  CHECK(f.fsm.stage() == ScaleStage::kSucceeded);
  CHECK(f.fsm.info(f.now).kind == "recover");
  CHECK(f.active_ids() == std::vector<std::string>{"w0", "w2"});
  CHECK(f.membership.generation() == 2);
  CHECK(f.ports.num_live() == 2);
  // The recovered generation is whole: the next scale takes its weights from it again.
  auto next = f.fsm.start(3, {"w0", "w2"}, f.now);
  REQUIRE(next.is_ok());
  CHECK(f.fsm.kind() == ScaleKind::kScale);
  f.register_worker("w1");
  const auto scale_assigns = assigns_of(f.fsm.on_registered("w1", f.now));
  REQUIRE(scale_assigns.size() == 3);
  CHECK_FALSE(scale_assigns.at("w1").recovery);
  CHECK(scale_assigns.at("w1").previous_members == std::vector<std::string>{"w0", "w2"});
}

TEST_CASE("a recovery takes the registered spares in", "[scale][recovery]") {
  ScaleFixture f;
  f.complete(f.fsm.start(2, {}, f.now).value());
  f.register_worker("spare-a");
  const std::vector<ScaleAction> started = recover_without(f, "w0");
  const auto assigns = assigns_of(started);
  REQUIRE(assigns.size() == 2);
  CHECK(assigns.at("w1").rank == 0);  // rank 0 lost: the first survivor serves the stores
  CHECK(assigns.at("spare-a").rank == 1);
  CHECK(assigns.at("w1").control_store.host == "here");
  f.complete(started);
  CHECK(f.active_ids() == std::vector<std::string>{"w1", "spare-a"});
}

TEST_CASE(
    "a recovery with no survivor and no spare is refused and a scale then starts from the "
    "checkpoint",
    "[scale][recovery]") {
  ScaleFixture f;
  f.complete(f.fsm.start(2, {}, f.now).value());
  for (const char* id : {"w0", "w1"}) {
    REQUIRE(f.membership.transition(id, WorkerState::kDead, "killed", f.now).is_ok());
  }
  f.fsm.on_generation_broken("every member lost", f.now);
  auto refused = f.fsm.start_recovery(f.now);
  REQUIRE_FALSE(refused.is_ok());
  CHECK(refused.status().code() == ErrorCode::kUnavailable);
  CHECK_FALSE(f.fsm.running());
  // The fleet forms anew: launched workers, and no Assign names the dead generation's members.
  auto started = f.fsm.start(2, {}, f.now);
  REQUIRE(started.is_ok());
  CHECK(count<LaunchWorker>(started.value()) == 2);
  f.register_worker("w0");
  f.fsm.on_registered("w0", f.now);
  f.register_worker("w1");
  const auto assigns = assigns_of(f.fsm.on_registered("w1", f.now));
  REQUIRE(assigns.size() == 2);
  for (const auto& [id, assign] : assigns) CHECK(assign.previous_members.empty());
}

TEST_CASE(
    "a member lost while a scale builds rolls it back without re-telling the broken "
    "generation",
    "[scale][recovery]") {
  ScaleFixture f;
  f.complete(f.fsm.start(2, {}, f.now).value());
  f.register_worker("spare-a");
  REQUIRE(f.fsm.start(3, {}, f.now).is_ok());
  REQUIRE(f.fsm.stage() == ScaleStage::kWaitAcks);
  REQUIRE(f.membership.transition("w1", WorkerState::kDead, "killed", f.now).is_ok());
  auto rollback = f.fsm.on_worker_gone("w1", "killed", f.now);
  CHECK(f.fsm.stage() == ScaleStage::kFailed);
  CHECK(count<SendAssign>(rollback) == 0);
  CHECK(f.membership.find("spare-a")->state == WorkerState::kSpare);
  CHECK(f.fsm.on_generation_broken("w1 lost", f.now).empty());
  // The recovery takes the survivor and the spare.
  auto started = f.fsm.start_recovery(f.now);
  REQUIRE(started.is_ok());
  CHECK(assigns_of(started.value()).size() == 2);
}

TEST_CASE("a member of the new generation lost while the leaving ranks retire ends the scale",
          "[scale][recovery]") {
  ScaleFixture f;
  f.complete(f.fsm.start(3, {}, f.now).value());
  f.ack_all(2);
  REQUIRE(f.fsm.stage() == ScaleStage::kDrainLeaving);
  f.fsm.on_leaving_drained(f.now);
  REQUIRE(f.fsm.stage() == ScaleStage::kRetireLeaving);
  REQUIRE(f.membership.transition("w1", WorkerState::kDead, "killed", f.now).is_ok());
  auto ended = f.fsm.on_worker_gone("w1", "killed", f.now);
  CHECK(f.fsm.stage() == ScaleStage::kSucceeded);
  // The leaving w2 still awaited is stopped by signal (its groups broke with w1).
  REQUIRE(count<StopWorker>(ended) == 1);
  CHECK(std::get<StopWorker>(ended[0]).worker_id == "w2");
  CHECK_FALSE(std::get<StopWorker>(ended[0]).force);
}

TEST_CASE("a scale-up drains nothing and has no DRAIN_LEAVING stage", "[scale]") {
  ScaleFixture f;
  f.complete(f.fsm.start(1, {}, f.now).value());
  auto started = f.fsm.start(2, {"w0"}, f.now);
  REQUIRE(started.is_ok());
  CHECK(f.fsm.draining().empty());
  auto seen = f.complete(started.value());
  CHECK(migrated(seen).empty());
  CHECK(stages_of(f.fsm.info(f.now)) ==
        std::vector<std::string>{"WAIT_WORKERS", "WAIT_ACKS", "RETIRE_LEAVING"});
}

TEST_CASE("an event stamped before the stage began gives it zero seconds, never negative",
          "[scale]") {
  // The coordinator's loop may pass a clock read taken before a message handler entered the
  // stage (the CI saw -0.0003 s).
  ScaleFixture f;
  f.complete(f.fsm.start(3, {}, f.now).value());
  REQUIRE(f.fsm.start(1, {}, f.now).is_ok());
  f.fsm.on_assign_ack("w0", 2, f.now + 10ms);
  REQUIRE(f.fsm.stage() == ScaleStage::kDrainLeaving);
  f.fsm.on_leaving_drained(f.now + 9ms);
  const auto info = f.fsm.info(f.now + 20ms);
  REQUIRE(info.timeline.size() == 3);
  CHECK(info.timeline[2].stage == "DRAIN_LEAVING");
  CHECK(info.timeline[2].seconds == 0);
  for (const auto& timing : info.timeline) CHECK(timing.seconds >= 0);
}

TEST_CASE("the scale reports where its ranks took their weights", "[scale]") {
  ScaleFixture f;
  f.complete(f.fsm.start(2, {}, f.now).value());
  auto started = f.fsm.start(3, {}, f.now);
  REQUIRE(started.is_ok());
  f.register_worker("w2");
  auto assigns = f.fsm.on_registered("w2", f.now);
  REQUIRE(count<SendAssign>(assigns) == 3);
  for (const ScaleAction& action : assigns) {
    const auto& assign = std::get<SendAssign>(action).assign;
    // Every member learns g's members, so the staying ones can hand their weights over.
    CHECK(assign.previous_members == std::vector<std::string>{"w0", "w1"});
    protocol::AssignAck ack{.generation = assign.generation,
                            .rank = assign.rank,
                            .capacity = std::nullopt,
                            .error = ""};
    ack.weight_bytes_from_peers = assign.rank == 2 ? 1000 : 10;
    ack.weight_bytes_from_checkpoint = 5;
    ack.weight_transfer_s = 0.1 * (assign.rank + 1);
    ack.build_stages = {{"groups", 0.01 * (3 - assign.rank)}, {"transfer", 0.2 * assign.rank}};
    f.fsm.record_build_report(ack);
    ack.generation = 99;  // another generation's ack counts nothing
    f.fsm.record_build_report(ack);
    f.fsm.on_assign_ack(std::get<SendAssign>(action).worker_id, assign.generation, f.now);
  }
  const auto info = f.fsm.info(f.now);
  CHECK(info.weight_bytes_from_peers == 1020);
  CHECK(info.weight_bytes_from_checkpoint == 15);
  CHECK(info.weight_transfer_s == Approx(0.3));
  // Each build step is the slowest rank's, in the order the ranks reported them.
  REQUIRE(info.build_stages.size() == 2);
  CHECK(info.build_stages[0].stage == "groups");
  CHECK(info.build_stages[0].seconds == Approx(0.03));
  CHECK(info.build_stages[1].stage == "transfer");
  CHECK(info.build_stages[1].seconds == Approx(0.4));
}

TEST_CASE("with --scale-weights-from checkpoint no Assign names the previous generation",
          "[scale]") {
  ScaleFixture f(/*weights_from_peers=*/false);
  f.complete(f.fsm.start(3, {}, f.now).value());
  auto down = f.fsm.start(1, {}, f.now);
  REQUIRE(down.is_ok());
  // Only the staying member is told; the leaving ranks get no handover.
  REQUIRE(count<SendAssign>(down.value()) == 1);
  const auto& assign = std::get<SendAssign>(down.value().front()).assign;
  CHECK(assign.rank == 0);
  CHECK(assign.previous_members.empty());
  CHECK_FALSE(assign.previous_placement);
}

TEST_CASE("with --scale-weights-from checkpoint a recovery reads the checkpoint too",
          "[scale][recovery]") {
  ScaleFixture f(/*weights_from_peers=*/false);
  f.complete(f.fsm.start(3, {}, f.now).value());
  const auto assigns = assigns_of(recover_without(f, "w2"));
  REQUIRE(assigns.size() == 2);
  for (const auto& [id, assign] : assigns) {
    CHECK(assign.recovery);
    CHECK(assign.previous_members.empty());
    CHECK_FALSE(assign.previous_placement);
  }
}

TEST_CASE("a leaving rank that cannot hand over its weights rolls the scale-down back", "[scale]") {
  ScaleFixture f;
  f.complete(f.fsm.start(3, {}, f.now).value());
  REQUIRE(f.fsm.start(2, {}, f.now).is_ok());
  REQUIRE(f.fsm.stage() == ScaleStage::kWaitAcks);
  // An ack error from a worker that is neither a member nor leaving changes nothing.
  CHECK(f.fsm.on_assign_failed("w9", 2, "who?", f.now).empty());
  CHECK(f.fsm.stage() == ScaleStage::kWaitAcks);
  auto rollback = f.fsm.on_assign_failed("w2", 2, "not a leaving rank of a scale-down", f.now);
  CHECK(f.fsm.stage() == ScaleStage::kFailed);
  CHECK_THAT(f.fsm.info(f.now).reason, Catch::Contains("w2 cannot hand over its weights"));
  CHECK(count<SendAssign>(rollback) == 3);  // w0, w1 and w2 are told generation 1 again
  CHECK(f.membership.generation() == 1);
}

TEST_CASE("a leaving worker that does not exit is killed at the RETIRE_LEAVING deadline",
          "[scale]") {
  ScaleFixture f;
  f.complete(f.fsm.start(2, {}, f.now).value());
  REQUIRE(f.fsm.start(1, {"w0", "w1"}, f.now).is_ok());
  REQUIRE(f.fsm.on_assign_ack("w0", 2, f.now).empty());
  f.fsm.on_leaving_drained(f.now);
  REQUIRE(f.fsm.stage() == ScaleStage::kRetireLeaving);
  // w1 never exits. Before the deadline (the stage timeout, 1 s here) nothing happens.
  CHECK(f.fsm.on_tick(f.now + 900ms).empty());
  CHECK(f.fsm.stage() == ScaleStage::kRetireLeaving);
  auto killed = f.fsm.on_tick(f.now + 1100ms);
  REQUIRE(count<StopWorker>(killed) == 1);
  const auto& stop = std::get<StopWorker>(killed.front());
  CHECK(stop.worker_id == "w1");
  CHECK(stop.force);  // SIGKILL, not another polite request
  // g+1 already serves: the scale stands.
  CHECK(f.fsm.stage() == ScaleStage::kSucceeded);
  CHECK(f.active_ids() == std::vector<std::string>{"w0"});
}

TEST_CASE("a rollback returns the spares it picked to SPARE", "[scale]") {
  ScaleFixture f;
  f.complete(f.fsm.start(1, {}, f.now).value());
  f.register_worker("spare-a");
  f.register_worker("spare-b");
  auto started = f.fsm.start(3, {"w0"}, f.now);
  REQUIRE(started.is_ok());
  CHECK(count<LaunchWorker>(started.value()) == 0);
  CHECK(f.membership.find("spare-a")->state == WorkerState::kJoining);
  CHECK(f.membership.find("spare-b")->state == WorkerState::kJoining);
  // spare-b cannot build generation 2: the scale rolls back.
  f.fsm.on_assign_failed("spare-b", 2, "cannot allocate", f.now);
  CHECK(f.fsm.stage() == ScaleStage::kFailed);
  for (const char* id : {"spare-a", "spare-b"}) {
    INFO(id);
    REQUIRE(f.membership.find(id) != nullptr);
    CHECK(f.membership.find(id)->state == WorkerState::kSpare);
    CHECK(f.membership.find(id)->rank == -1);
  }
  // And the next scale takes them again.
  auto again = f.fsm.start(3, {"w0"}, f.now);
  REQUIRE(again.is_ok());
  CHECK(count<LaunchWorker>(again.value()) == 0);
}

TEST_CASE("a launch that fails rolls the scale back at once", "[scale]") {
  ScaleFixture f;
  f.complete(f.fsm.start(1, {}, f.now).value());
  auto started = f.fsm.start(2, {"w0"}, f.now);
  REQUIRE(started.is_ok());
  REQUIRE(count<LaunchWorker>(started.value()) == 1);
  std::string launched;
  for (const ScaleAction& action : started.value()) {
    if (const auto* launch = std::get_if<LaunchWorker>(&action)) launched = launch->worker_id;
  }
  // The launcher could not start it (Coordinator::apply reports it as gone, unregistered).
  f.fsm.on_worker_gone(launched, "cannot exec eep-worker", f.now);
  CHECK(f.fsm.stage() == ScaleStage::kFailed);
  CHECK_THAT(f.fsm.info(f.now).reason, Catch::Contains(launched));
  CHECK(f.active_ids() == std::vector<std::string>{"w0"});
  CHECK(f.ports.num_live() == 2);  // g+1's ports went back
  CHECK(f.fsm.start(2, {"w0"}, f.now).is_ok());
}

TEST_CASE("max-workers is a bound the launcher may reach, not pass", "[scale]") {
  ScaleFixture f;  // --max-workers 8
  f.complete(f.fsm.start(1, {}, f.now).value());
  // One worker runs; 7 more make exactly 8: accepted.
  auto to_limit = f.fsm.start(8, {"w0"}, f.now);
  REQUIRE(to_limit.is_ok());
  CHECK(count<LaunchWorker>(to_limit.value()) == 7);
  f.complete(to_limit.value());
  CHECK(f.active_ids().size() == 8);
  // A ninth is one too many.
  std::vector<std::string> live;
  for (const std::string& id : f.active_ids()) live.push_back(id);
  auto past_limit = f.fsm.start(9, live, f.now);
  REQUIRE_FALSE(past_limit.is_ok());
  CHECK(past_limit.status().code() == ErrorCode::kResourceExhausted);
  CHECK_THAT(past_limit.status().message(), Catch::Contains("max-workers"));
  CHECK(f.active_ids().size() == 8);
}
