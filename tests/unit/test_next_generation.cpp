// The next generation's lifecycle on a worker (worker/elastic/next_generation.h): the paths that
// scale-ups, scale-downs, handovers, rollbacks and failures take, and the transitions that no
// path may take, on plain values.
#include <catch2/catch.hpp>

#include "eep/worker/elastic/next_generation.h"

using namespace eep::worker;
using Stage = NextGenerationStage;

namespace {

// Walks `path` from kNone; every step must be legal.
void walk(const std::vector<Stage>& path) {
  NextGenerationLifecycle lifecycle;
  for (Stage to : path) {
    INFO(to_string(lifecycle.stage()) << " -> " << to_string(to));
    REQUIRE(lifecycle.transition(to, "test").is_ok());
    CHECK(lifecycle.is(to));
  }
}

}  // namespace

TEST_CASE("the paths of a scale through the lifecycle are legal", "[next_generation]") {
  SECTION("a new rank, or a scale with weights from the checkpoint") {
    walk({Stage::kBuilding, Stage::kBuilt, Stage::kNone});
  }
  SECTION("a serving rank of g+1 that sends its weights between steps") {
    walk({Stage::kBuilding, Stage::kReadyToSend, Stage::kSending, Stage::kBuilt, Stage::kNone});
  }
  SECTION("a leaving rank of a scale-down hands over, then retires") {
    walk({Stage::kReadyToSend, Stage::kSending, Stage::kHandedOver, Stage::kRetired});
  }
  SECTION("a leaving rank with nothing to hand over retires at once") {
    walk({Stage::kRetired});
  }
  SECTION("a failed chunk is reported, then the next scale builds again") {
    walk({Stage::kBuilding, Stage::kReadyToSend, Stage::kSending, Stage::kFailed, Stage::kNone,
          Stage::kBuilding});
  }
  SECTION("a failed build is reported at once") {
    walk({Stage::kBuilding, Stage::kNone});
  }
  SECTION("rollback (abandon) from every stage but the final one") {
    for (Stage from : {Stage::kBuilding, Stage::kReadyToSend, Stage::kSending, Stage::kBuilt,
                       Stage::kHandedOver, Stage::kFailed}) {
      INFO(to_string(from));
      CHECK(is_legal_transition(from, Stage::kNone));
    }
  }
}

TEST_CASE("illegal transitions are refused and change nothing", "[next_generation]") {
  const std::vector<std::pair<Stage, Stage>> illegal = {
      {Stage::kNone, Stage::kSending},       // a transfer starts only once ready
      {Stage::kNone, Stage::kBuilt},         // built only through a build
      {Stage::kBuilding, Stage::kSending},   // not before every rank is ready
      {Stage::kReadyToSend, Stage::kBuilt},  // the weights are not there yet
      {Stage::kBuilt, Stage::kSending},      // nothing left to send
      {Stage::kBuilt, Stage::kRetired},      // a member of g+1 does not retire
      {Stage::kFailed, Stage::kBuilt},       // a failure is reported first
      {Stage::kHandedOver, Stage::kBuilt},   // a leaving rank builds nothing
      {Stage::kRetired, Stage::kNone},       // final
      {Stage::kRetired, Stage::kBuilding},   // final
  };
  for (const auto& [from, to] : illegal) {
    INFO(to_string(from) << " -> " << to_string(to));
    CHECK_FALSE(is_legal_transition(from, to));
  }
  NextGenerationLifecycle lifecycle;
  REQUIRE(lifecycle.transition(Stage::kBuilding, "test").is_ok());
  auto refused = lifecycle.transition(Stage::kSending, "test");
  CHECK(refused.code() == eep::ErrorCode::kFailedPrecondition);
  CHECK_THAT(refused.message(), Catch::Contains("BUILDING -> SENDING"));
  CHECK(lifecycle.is(Stage::kBuilding));
  CHECK(lifecycle.transition(Stage::kBuilding, "again").is_ok());  // no change: a no-op
}

TEST_CASE("every stage has a name", "[next_generation]") {
  for (Stage stage : {Stage::kNone, Stage::kBuilding, Stage::kReadyToSend, Stage::kSending,
                      Stage::kBuilt, Stage::kHandedOver, Stage::kFailed, Stage::kRetired}) {
    CHECK(to_string(stage) != "UNKNOWN");
  }
}
