#include <catch2/catch.hpp>

#include "eep/coordinator/membership.h"

using namespace eep;
using namespace eep::coordinator;

namespace {

WorkerRecord worker_record(const std::string& id) {
  WorkerRecord record;
  record.id = id;
  record.host = "h";
  record.pid = 1;
  return record;
}

}  // namespace

TEST_CASE("the legal transitions and only those", "[membership]") {
  using S = WorkerState;
  const S all[] = {S::kSpare, S::kJoining, S::kActive, S::kLeaving, S::kDead};
  int num_legal = 0;
  for (S from : all) {
    for (S to : all) num_legal += is_legal_transition(from, to);
  }
  CHECK(num_legal == 11);
  CHECK(is_legal_transition(S::kSpare, S::kJoining));
  CHECK(is_legal_transition(S::kJoining, S::kActive));
  CHECK(is_legal_transition(S::kActive, S::kLeaving));
  CHECK(is_legal_transition(S::kActive, S::kDead));
  CHECK_FALSE(is_legal_transition(S::kSpare, S::kActive));  // must join first
  CHECK_FALSE(is_legal_transition(S::kDead, S::kSpare));    // death is final
  CHECK_FALSE(is_legal_transition(S::kActive, S::kJoining));
  CHECK_FALSE(is_legal_transition(S::kActive, S::kActive));
}

TEST_CASE("membership applies legal transitions and refuses illegal ones", "[membership]") {
  Membership members;
  const auto now = Clock::now();
  REQUIRE(members.add(worker_record("w0"), now).is_ok());
  CHECK(members.find("w0")->state == WorkerState::kSpare);
  CHECK(members.add(worker_record("w0"), now).code() == ErrorCode::kAlreadyExists);

  Status illegal = members.transition("w0", WorkerState::kActive, "", now);
  CHECK(illegal.code() == ErrorCode::kFailedPrecondition);
  CHECK_THAT(illegal.message(), Catch::Contains("SPARE -> ACTIVE"));
  CHECK(members.find("w0")->state == WorkerState::kSpare);  // unchanged

  REQUIRE(members.transition("w0", WorkerState::kJoining, "", now).is_ok());
  REQUIRE(members.commit_generation(1, {"w0"}, now).is_ok());
  CHECK(members.find("w0")->state == WorkerState::kActive);
  CHECK(members.find("w0")->rank == 0);
  CHECK(members.generation() == 1);

  CHECK(members.transition("nobody", WorkerState::kDead, "", now).code() == ErrorCode::kNotFound);
  REQUIRE(members.transition("w0", WorkerState::kDead, "killed", now).is_ok());
  CHECK(members.find("w0")->reason == "killed");
  CHECK(members.find("w0")->rank == -1);
  CHECK_FALSE(members.transition("w0", WorkerState::kSpare, "", now).is_ok());
  // A dead worker's id may register again (it was restarted).
  CHECK(members.add(worker_record("w0"), now).is_ok());
  CHECK(members.find("w0")->state == WorkerState::kSpare);
}

TEST_CASE("a generation commit checks its members", "[membership]") {
  Membership members;
  const auto now = Clock::now();
  for (const char* id : {"w0", "w1", "w2"}) REQUIRE(members.add(worker_record(id), now).is_ok());
  // Members must be JOINING or ACTIVE.
  CHECK_FALSE(members.commit_generation(1, {"w0"}, now).is_ok());
  REQUIRE(members.transition("w0", WorkerState::kJoining, "", now).is_ok());
  REQUIRE(members.transition("w1", WorkerState::kJoining, "", now).is_ok());
  REQUIRE(members.commit_generation(1, {"w0", "w1"}, now).is_ok());
  // Generations only move forward.
  CHECK_FALSE(members.commit_generation(1, {"w0", "w1"}, now).is_ok());
  // An ACTIVE worker left out must have left ACTIVE first.
  CHECK_FALSE(members.commit_generation(2, {"w0"}, now).is_ok());
  REQUIRE(members.transition("w1", WorkerState::kLeaving, "scale down", now).is_ok());
  REQUIRE(members.commit_generation(2, {"w0"}, now).is_ok());
  auto active = members.active_by_rank();
  REQUIRE(active.size() == 1);
  CHECK(active[0]->id == "w0");
  CHECK(active[0]->generation == 2);
}

TEST_CASE("silent workers are found oldest first and dead ones pruned", "[membership]") {
  Membership members;
  const auto t0 = Clock::now();
  REQUIRE(members.add(worker_record("a"), t0).is_ok());
  REQUIRE(members.add(worker_record("b"), t0 + std::chrono::seconds(1)).is_ok());
  CHECK(members.silent_workers(t0 + std::chrono::seconds(2), std::chrono::seconds(3)).empty());
  auto silent = members.silent_workers(t0 + std::chrono::seconds(5), std::chrono::seconds(3));
  CHECK(silent == std::vector<std::string>{"a", "b"});
  members.heard_from("a", t0 + std::chrono::seconds(5));
  silent = members.silent_workers(t0 + std::chrono::seconds(6), std::chrono::seconds(3));
  CHECK(silent == std::vector<std::string>{"b"});
  REQUIRE(
      members.transition("b", WorkerState::kDead, "silent", t0 + std::chrono::seconds(6)).is_ok());
  CHECK(members.silent_workers(t0 + std::chrono::seconds(7), std::chrono::seconds(3)).empty());
  members.prune_dead(t0 + std::chrono::seconds(7), std::chrono::seconds(10));
  CHECK(members.find("b") != nullptr);
  members.prune_dead(t0 + std::chrono::seconds(20), std::chrono::seconds(10));
  CHECK(members.find("b") == nullptr);
}
