// Dispatch on capacity (dispatch_policy.h) on plain values: where the next request goes, when it
// waits, and which running requests move after a scale-up.
#include <catch2/catch.hpp>

#include "eep/coordinator/dispatch_policy.h"

using namespace eep::coordinator;

TEST_CASE("dispatch: a rank holds max_num_seqs plus the queue depth", "[dispatch]") {
  DispatchOptions options;
  CHECK(dispatch_limit({"w0", 0, 8}, options) == 10);         // depth max(2, 8 / 4)
  CHECK(dispatch_limit({"w0", 0, 64}, options) == 80);        // depth 64 / 4
  CHECK(dispatch_limit({"w0", 0, 0}, options) == INT32_MAX);  // did not say: unbounded
  options.queue_depth = 0;
  CHECK(dispatch_limit({"w0", 0, 8}, options) == 8);
}

TEST_CASE("dispatch: the rank with the most room, ties to the lower rank, none when full",
          "[dispatch]") {
  DispatchOptions options;
  options.queue_depth = 0;
  std::vector<DispatchTarget> targets = {{"w0", 3, 8}, {"w1", 1, 8}, {"w2", 1, 8}};
  CHECK(pick_target(targets, options) == 1u);
  targets[1].num_assigned = 8;
  targets[2].num_assigned = 8;
  CHECK(pick_target(targets, options) == 0u);
  targets[0].num_assigned = 8;
  CHECK_FALSE(pick_target(targets, options).has_value());
  CHECK_FALSE(pick_target({}, options).has_value());
  // Ranks that did not report max_num_seqs take requests as before: the least loaded.
  CHECK(pick_target({{"a", 5, 0}, {"b", 2, 0}}, options) == 1u);
}

namespace {

std::vector<RunningRequest> running_on(size_t target_idx, int count, uint64_t first_id,
                                       int num_generated, int max_tokens, int prompt = 16) {
  std::vector<RunningRequest> running;
  for (int i = 0; i < count; ++i) {
    running.push_back({first_id + uint64_t(i), target_idx, prompt, num_generated, max_tokens});
  }
  return running;
}

}  // namespace

TEST_CASE("dispatch: after a scale-up the new ranks take running requests up to the mean",
          "[dispatch]") {
  DispatchOptions options;
  const std::vector<DispatchTarget> targets = {
      {"old0", 8, 8}, {"old1", 8, 8}, {"new2", 0, 8}, {"new3", 0, 8}};
  std::vector<RunningRequest> running = running_on(0, 8, 100, 10, 200);
  for (const RunningRequest& r : running_on(1, 8, 200, 10, 200)) running.push_back(r);
  const std::vector<RunningMove> moves = move_running_plan(targets, running, options);
  REQUIRE(moves.size() == 8);
  std::vector<int> load = {8, 8, 0, 0};
  for (const RunningMove& move : moves) {
    --load[move.from_idx];
    ++load[move.to_idx];
    CHECK(move.to_idx >= 2);
  }
  CHECK(load == std::vector<int>{4, 4, 4, 4});

  SECTION("turned off: nothing moves") {
    options.move_running = false;
    CHECK(move_running_plan(targets, running, options).empty());
  }
}

TEST_CASE("dispatch: only requests worth their re-prefill move, the longest left first",
          "[dispatch]") {
  DispatchOptions options;  // at least 32 left, re-prefill at most 4x what is left
  const std::vector<DispatchTarget> targets = {{"old", 6, 8}, {"new", 0, 8}};
  std::vector<RunningRequest> running = {
      {1, 0, 16, 190, 200},  // 10 left: not worth it
      {2, 0, 16, 100, 200},  // 100 left
      {3, 0, 1000, 0, 100},  // 100 left, 1000 to re-prefill: not worth it
      {4, 0, 16, 0, 200},    // 200 left: first
      {5, 0, 16, 150, 200},  // 50 left
      {6, 0, 16, 170, 200},  // 30 left: below 32
  };
  const std::vector<RunningMove> moves = move_running_plan(targets, running, options);
  REQUIRE(moves.size() == 3);  // 6 -> 3 and 3
  CHECK(moves[0].request_id == 4);
  CHECK(moves[1].request_id == 2);
  CHECK(moves[2].request_id == 5);
}

TEST_CASE("dispatch: ranks within one request of the mean are left alone", "[dispatch]") {
  DispatchOptions options;
  const std::vector<DispatchTarget> targets = {{"a", 5, 8}, {"b", 4, 8}, {"c", 4, 8}};
  std::vector<RunningRequest> running = running_on(0, 5, 1, 0, 200);
  CHECK(move_running_plan(targets, running, options).empty());
}
