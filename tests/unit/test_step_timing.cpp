// The forward steps' time per phase (worker/engine/step_timing.h): nothing before the interval or
// without steps, then ms per step of every phase and their total, and the sums start again.
#include <catch2/catch.hpp>

#include "eep/worker/engine/step_timing.h"

using namespace eep::worker;
using namespace std::chrono_literals;

TEST_CASE("step timing reports ms per step per phase once per interval", "[step_timing]") {
  StepTiming timing(1s);
  REQUIRE(timing.enabled());
  const StepTiming::Clock::time_point start{};
  CHECK(!timing.report(start).has_value());  // the interval starts here
  for (int step = 0; step < 4; ++step) {
    timing.add(StepPhase::kSchedule, 1ms);
    timing.add(StepPhase::kForward, 30ms);
    timing.add(StepPhase::kBetween, 2ms);
    timing.step_done(step < 2 ? 256 : 128);
  }
  CHECK(!timing.report(start + 999ms).has_value());
  const auto line = timing.report(start + 2s);
  REQUIRE(line.has_value());
  CHECK(*line ==
        "4 forward steps in 2.0 s, 192.0 tokens per step; ms per step: schedule 1.000, vote "
        "0.000, prepare 0.000, forward 30.000, update 0.000, between steps 2.000; total 33.000");
  // Started again: no steps, no line, however long.
  CHECK(!timing.report(start + 10s).has_value());
  timing.add(StepPhase::kVote, 5ms);
  timing.step_done(1);
  const auto next = timing.report(start + 11s);
  REQUIRE(next.has_value());
  CHECK_THAT(*next, Catch::StartsWith("1 forward steps in 9.0 s, 1.0 tokens per step"));
  CHECK_THAT(*next, Catch::Contains("vote 5.000") && Catch::Contains("total 5.000"));
}

TEST_CASE("step timing with a zero interval is off", "[step_timing]") {
  StepTiming timing;
  CHECK(!timing.enabled());
  timing.add(StepPhase::kForward, 10ms);
  timing.step_done(8);
  CHECK(!timing.report(StepTiming::Clock::time_point{} + 1h).has_value());
}
