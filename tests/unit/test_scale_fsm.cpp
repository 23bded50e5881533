#include <catch2/catch.hpp>

#include "eep/coordinator/scale_fsm.h"

using namespace eep;
using namespace eep::coordinator;
using namespace std::chrono_literals;

namespace {

struct Fixture {
  Membership membership;
  PortAllocator ports = PortAllocator::create({{"*", 100, 109}}).value();
  ScaleLimits limits{8, true, "here", 1000ms, std::nullopt};
  ScaleFsm fsm{membership, ports, limits};
  Clock::time_point now = Clock::now();

  void register_worker(const std::string& id) {
    WorkerRecord record;
    record.id = id;
    record.host = "here";
    REQUIRE(membership.add(record, now).is_ok());
  }

  // Registers the launched workers and acks every assignment; returns the actions seen.
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
      seen.insert(seen.end(), more.begin(), more.end());
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
  Fixture f;
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
  CHECK(info.timeline.size() == 3);
}

TEST_CASE("spares are used before launching", "[scale]") {
  Fixture f;
  f.register_worker("spare-a");
  auto started = f.fsm.start(2, {}, f.now);
  REQUIRE(started.is_ok());
  CHECK(count<LaunchWorker>(started.value()) == 1);
  CHECK(f.membership.find("spare-a")->state == WorkerState::kJoining);
  f.complete(started.value());
  CHECK(f.active_ids() == std::vector<std::string>{"spare-a", "w0"});
}

TEST_CASE("impossible scale requests are refused and change nothing", "[scale]") {
  Fixture f;
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
  Fixture f;
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
  Fixture f;
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
  Fixture f;
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
  Fixture f;
  ExpertLayout experts;
  experts.num_layers = 2;
  experts.num_experts = 6;
  experts.num_redundant_experts = 1;
  ScaleLimits limits = f.limits;
  limits.experts = experts;
  ScaleFsm fsm{f.membership, f.ports, limits};
  Fixture* fixture = &f;
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
