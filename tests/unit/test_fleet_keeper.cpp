// The fleet keeper's decisions (coordinator/include/eep/coordinator/fleet_keeper.h): recover a
// broken generation first, then return to the target size; back off after failures and give up
// after --max-restarts within the window; an operator's scale starts over.
#include <catch2/catch.hpp>

#include "eep/coordinator/fleet_keeper.h"

using namespace eep::coordinator;
using namespace std::chrono_literals;

namespace {

KeeperOptions keeper_options() {
  KeeperOptions o;
  o.max_restarts = 3;
  o.restart_window = 60s;
  o.first_backoff = 500ms;
  o.max_backoff = 4s;
  return o;
}

FleetView view(int active_dp, bool scale_running = false) {
  return FleetView{active_dp, scale_running};
}

}  // namespace

TEST_CASE("a lost member makes the fleet recover first, then return to its target size",
          "[keeper]") {
  FleetKeeper keeper(keeper_options());
  const Clock::time_point t0 = Clock::now();
  keeper.set_target(3);
  CHECK(keeper.next(view(3), t0) == KeeperAction::kNone);
  keeper.on_member_lost(4, "worker w1 (rank 1 of generation 4): killed", t0);
  CHECK(keeper.broken());
  // Losses that come together are recovered together: the recovery waits a moment.
  CHECK(keeper.next(view(2), t0) == KeeperAction::kNone);
  CHECK(keeper.next(view(2), t0 + 50ms) == KeeperAction::kRecover);
  CHECK(keeper.next(view(2, true), t0 + 50ms) == KeeperAction::kNone);  // not while a scale runs
  keeper.on_started(KeeperAction::kRecover);
  keeper.on_scale_ended(true, true, true, 2, 5, "", t0 + 300ms);
  CHECK_FALSE(keeper.broken());
  CHECK(keeper.next(view(2), t0 + 300ms) == KeeperAction::kScaleToTarget);
  keeper.on_started(KeeperAction::kScaleToTarget);
  keeper.on_scale_ended(true, false, true, 3, 6, "", t0 + 1s);
  CHECK(keeper.next(view(3), t0 + 1s) == KeeperAction::kNone);
  const auto health = keeper.health(t0 + 2s);
  CHECK(health.target_dp == 3);
  CHECK(health.num_failures == 1);
  CHECK(health.num_recoveries == 1);
  CHECK(health.num_restarts == 1);
  CHECK(health.last_recovery_s == Approx(0.3));
  CHECK(health.last_failure_ago_s == Approx(2.0));
  CHECK_THAT(health.last_failure, Catch::Contains("w1"));
  CHECK(health.gave_up.empty());
}

TEST_CASE("a recovery undone by another loss while it runs is retried at once, not as a failure",
          "[keeper]") {
  FleetKeeper keeper(keeper_options());  // --max-restarts 3, first backoff 500 ms
  Clock::time_point t = Clock::now();
  keeper.set_target(8);
  keeper.on_member_lost(4, "worker w1 (rank 1 of generation 4): killed", t);
  // Each round: the recovery starts after the settle, another member of generation 4 is seen
  // lost while it builds, and the recovery rolls back. More rounds than --max-restarts.
  for (int round = 0; round < 4; ++round) {
    INFO("round " << round);
    t += 50ms;
    REQUIRE(keeper.next(view(7 - round), t) == KeeperAction::kRecover);
    keeper.on_started(KeeperAction::kRecover);
    t += 127ms;
    keeper.on_member_lost(4, "worker w" + std::to_string(round + 2) + ": killed", t);
    t += 5ms;
    keeper.on_scale_ended(false, true, true, 6 - round, 4, "generation 4 broke", t);
    CHECK(keeper.broken());
    // At once: no backoff behind it.
    CHECK(keeper.next(view(6 - round), t) == KeeperAction::kRecover);
  }
  CHECK(keeper.health(t).gave_up.empty());
  CHECK(keeper.health(t).num_failures == 5);
  // A recovery that fails with no new loss (a survivor cannot join) backs off as before.
  keeper.on_started(KeeperAction::kRecover);
  t += 100ms;
  keeper.on_scale_ended(false, true, true, 3, 4, "worker w0 cannot join generation 5", t);
  CHECK(keeper.next(view(3), t) == KeeperAction::kNone);
  CHECK(keeper.next(view(3), t + 499ms) == KeeperAction::kNone);
  CHECK(keeper.next(view(3), t + 500ms) == KeeperAction::kRecover);
  // And it healed with the next one.
  keeper.on_started(KeeperAction::kRecover);
  keeper.on_scale_ended(true, true, true, 3, 5, "", t + 800ms);
  CHECK_FALSE(keeper.broken());
  CHECK(keeper.health(t + 800ms).num_recoveries == 1);
}

TEST_CASE("failed scales back off doubling and the keeper gives up after --max-restarts",
          "[keeper]") {
  FleetKeeper keeper(keeper_options());
  Clock::time_point t = Clock::now();
  keeper.set_target(4);
  keeper.on_scale_ended(true, false, true, 4, 1, "", t);  // formed at 4; then 2 were lost
  std::chrono::milliseconds expected_backoff = 500ms;
  for (int failure = 1; failure <= 3; ++failure) {
    INFO("failure " << failure);
    REQUIRE(keeper.next(view(2), t) == KeeperAction::kScaleToTarget);
    keeper.on_started(KeeperAction::kScaleToTarget);
    keeper.on_scale_ended(false, false, true, 4, 3, "worker w2 exited with status 1", t);
    if (failure == 3) break;
    CHECK(keeper.next(view(2), t + expected_backoff - 1ms) == KeeperAction::kNone);
    t += expected_backoff;
    expected_backoff *= 2;
  }
  // The third failure within the window: no more tries, whatever the time, and status says why.
  CHECK(keeper.next(view(2), t + 1h) == KeeperAction::kNone);
  const auto health = keeper.health(t);
  CHECK_THAT(health.gave_up, Catch::Contains("3 scales toward dp 4 failed"));
  CHECK_THAT(health.gave_up, Catch::Contains("exited with status 1"));
  CHECK(health.num_restarts == 3);
  // A broken generation is still recovered after giving up (after the backoff)...
  keeper.on_member_lost(3, "w0 lost", t);
  CHECK(keeper.next(view(1), t + 1s) == KeeperAction::kRecover);
  // ... and an operator's scale starts over.
  keeper.on_scale_ended(true, true, true, 1, 4, "", t);
  keeper.set_target(2);
  CHECK(keeper.next(view(1), t) == KeeperAction::kScaleToTarget);
  CHECK(keeper.health(t).gave_up.empty());
}

TEST_CASE("failures older than the window do not count toward giving up", "[keeper]") {
  FleetKeeper keeper(keeper_options());
  Clock::time_point t = Clock::now();
  keeper.set_target(2);
  for (int failure = 0; failure < 5; ++failure) {
    keeper.on_scale_ended(false, false, true, 2, 1, "port taken", t);
    t += 40s;  // two failures per 60 s window at most
  }
  CHECK(keeper.next(view(1), t) == KeeperAction::kScaleToTarget);
  CHECK(keeper.health(t).gave_up.empty());
}

TEST_CASE("a refused scale waits for its backoff or for a spare to register", "[keeper]") {
  FleetKeeper keeper(keeper_options());
  const Clock::time_point t = Clock::now();
  keeper.set_target(2);
  keeper.on_refused("dp 2 needs 2 more workers but only 0 spares are registered", t);
  CHECK(keeper.next(view(0), t + 100ms) == KeeperAction::kNone);
  CHECK(keeper.next(view(0), t + 500ms) == KeeperAction::kScaleToTarget);
  keeper.on_refused("still no spares", t);
  keeper.on_spare_registered();
  CHECK(keeper.next(view(0), t) == KeeperAction::kScaleToTarget);
  // A refusal is not a failed scale: it never makes the keeper give up.
  for (int i = 0; i < 10; ++i) keeper.on_refused("no spares", t);
  CHECK(keeper.health(t).gave_up.empty());
}

TEST_CASE("a generation with nothing to recover is forgotten and the fleet forms anew",
          "[keeper]") {
  FleetKeeper keeper(keeper_options());
  const Clock::time_point t = Clock::now();
  keeper.set_target(2);
  keeper.on_member_lost(7, "w0 lost", t);
  keeper.on_member_lost(7, "w1 lost", t);
  CHECK(keeper.health(t).num_failures == 2);
  CHECK(keeper.next(view(0), t + 1s) == KeeperAction::kRecover);
  keeper.on_nothing_to_recover(t);
  CHECK_FALSE(keeper.broken());
  CHECK(keeper.next(view(0), t) == KeeperAction::kScaleToTarget);
  // The fresh generation heals nothing it did not break: no recovery counted.
  keeper.on_scale_ended(true, false, true, 2, 8, "", t);
  CHECK(keeper.health(t).num_recoveries == 0);
}

TEST_CASE("an operator's scale that succeeds sets the target and one that fails is not retried",
          "[keeper]") {
  FleetKeeper keeper(keeper_options());
  const Clock::time_point t = Clock::now();
  keeper.set_target(2);
  keeper.on_scale_ended(false, false, /*ours=*/false, 4, 1, "worker w3 was lost", t);
  CHECK(keeper.next(view(2), t + 1h) == KeeperAction::kNone);
  CHECK(keeper.health(t).target_dp == 2);
  keeper.on_scale_ended(true, false, /*ours=*/false, 4, 2, "", t);
  CHECK(keeper.health(t).target_dp == 4);
  CHECK(keeper.next(view(4), t) == KeeperAction::kNone);
}

TEST_CASE("the initial formation is no restart", "[keeper]") {
  FleetKeeper keeper(keeper_options());
  const Clock::time_point t = Clock::now();
  keeper.set_target(2);
  REQUIRE(keeper.next(view(0), t) == KeeperAction::kScaleToTarget);
  keeper.on_started(KeeperAction::kScaleToTarget);
  keeper.on_scale_ended(true, false, true, 2, 1, "", t);
  CHECK(keeper.health(t).num_restarts == 0);
}

TEST_CASE("no target means no action", "[keeper]") {
  FleetKeeper keeper(keeper_options());
  CHECK(keeper.next(view(0), Clock::now()) == KeeperAction::kNone);
}
