// The engine's generations (DESIGN.md section 6): the ranks of a new generation agree on their KV
// cache size (the fewest blocks of any rank) while they build it, and serve with it from the
// switch on. Ranks are threads with Gloo groups over loopback.
#include <catch2/catch.hpp>

#include <thread>

#include "eep/worker/model/random_checkpoint.h"
#include "engine_fixture.h"
#include "scratch_dir.h"

using namespace eep;
using namespace eep::worker;

namespace {

protocol::Assign assign_of(int rank, int world_size, const std::pair<int, int>& ports) {
  protocol::Assign assign;
  assign.generation = 1;
  assign.rank = rank;
  assign.world_size = world_size;
  for (int r = 0; r < world_size; ++r) assign.members.push_back("w" + std::to_string(r));
  assign.control_store = {"127.0.0.1", ports.first};
  assign.ep_store = {"127.0.0.1", ports.second};
  return assign;
}

}  // namespace

TEST_CASE("engine generation: ranks agree on the fewest KV blocks and serve with them",
          "[engine_generation]") {
  const int block_size = EngineOptions{}.backend.block_size;
  const std::vector<int> own_blocks = {96, 40};
  std::vector<std::unique_ptr<EngineCore>> engines;
  for (int blocks : own_blocks)
    engines.push_back(eep::testing::make_engine(eep::testing::tiny_model(), blocks));
  const std::pair<int, int> ports = eep::testing::free_store_ports();
  std::vector<Status> built(2);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < 2; ++rank) {
    threads.emplace_back([&, rank] {
      built[rank] = eep::testing::build(*engines[rank], assign_of(rank, 2, ports));
    });
  }
  for (auto& thread : threads) thread.join();
  for (int rank = 0; rank < 2; ++rank) {
    INFO("rank " << rank << ": " << built[rank].to_string());
    REQUIRE(built[rank].is_ok());
    // Built and not switched yet: the acknowledgement already carries the agreed size.
    const protocol::ModelCapacity capacity = engines[rank]->capacity();
    CHECK(capacity.num_kv_blocks == 40);
    CHECK(capacity.max_model_len == 40 * block_size);
  }

  // The switch (a collective step) installs it: rank 0 keeps its 96 blocks allocated but serves
  // with 40, so a request longer than 40 blocks is refused there as on rank 1.
  threads.clear();
  std::vector<Status> stepped(2);
  for (int rank = 0; rank < 2; ++rank) {
    threads.emplace_back([&, rank] {
      auto step = engines[rank]->step(0);
      stepped[rank] = step.is_ok() ? Status::ok() : step.status();
    });
  }
  for (auto& thread : threads) thread.join();
  for (int rank = 0; rank < 2; ++rank) {
    INFO("rank " << rank << ": " << stepped[rank].to_string());
    REQUIRE(stepped[rank].is_ok());
    CHECK(engines[rank]->serving());
    CHECK(engines[rank]->capacity().num_kv_blocks == 40);
    CHECK(engines[rank]->load().num_kv_blocks == 40);

    protocol::SubmitRequest too_long;
    too_long.request_id = 7;
    too_long.prompt_ids.assign(40 * block_size, 1);
    too_long.params.max_tokens = 8;
    auto refused = engines[rank]->submit(too_long);
    REQUIRE(refused.has_value());
    CHECK(refused->finish_reason == "error");

    protocol::SubmitRequest fits = too_long;
    fits.prompt_ids.assign(30 * block_size, 1);
    CHECK_FALSE(engines[rank]->submit(fits).has_value());
    CHECK(engines[rank]->cancel(7).has_value());
  }
}

namespace {

// Steps every engine once, each on its own thread (the lockstep is collective).
std::vector<Result<StepResult>> step_all(std::vector<std::unique_ptr<EngineCore>>& engines) {
  std::vector<Result<StepResult>> results(engines.size(),
                                          Result<StepResult>(error(ErrorCode::kInternal, "")));
  std::vector<std::thread> threads;
  for (size_t rank = 0; rank < engines.size(); ++rank) {
    threads.emplace_back([&, rank] { results[rank] = engines[rank]->step(0); });
  }
  for (auto& thread : threads) thread.join();
  return results;
}

// Begins `assign_of(rank)` on every engine and waits until each has built it (no switch order).
void build_without_order(std::vector<std::unique_ptr<EngineCore>>& engines, int64_t generation) {
  const std::pair<int, int> ports = eep::testing::free_store_ports();
  std::vector<Status> built(engines.size());
  std::vector<std::thread> threads;
  for (size_t rank = 0; rank < engines.size(); ++rank) {
    threads.emplace_back([&, rank] {
      protocol::Assign assign = assign_of(static_cast<int>(rank), 2, ports);
      assign.generation = generation;
      built[rank] = engines[rank]->begin_generation(assign);
      while (built[rank].is_ok()) {
        auto done = engines[rank]->next_generation_built();
        if (!done.is_ok()) built[rank] = done.status();
        if (!done.is_ok() || done.value()) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (const Status& status : built) REQUIRE(status.is_ok());
}

}  // namespace

TEST_CASE(
    "engine generation: nobody switches without the coordinator's order, a rollback drops "
    "the built generation on every rank, the next scale switches",
    "[engine_generation]") {
  std::vector<std::unique_ptr<EngineCore>> engines;
  for (int rank = 0; rank < 2; ++rank)
    engines.push_back(eep::testing::make_engine(eep::testing::tiny_model()));
  build_without_order(engines, 1);
  for (auto& engine : engines) {
    CHECK_FALSE(engine->can_step());  // built, not ordered
    REQUIRE(engine->order_switch(protocol::Switch{1, false}).is_ok());
  }
  for (auto& result : step_all(engines)) REQUIRE(result.is_ok());
  for (auto& engine : engines) REQUIRE(engine->generation() == 1);

  // Generation 2 is built everywhere, then the scale rolls back. Rank 1 hears of the rollback
  // later than rank 0: in between, the ranks step without switching (no order) and rank 0 does
  // not take itself for a leaving rank.
  build_without_order(engines, 2);
  engines[0]->abandon_next_generation();
  for (int i = 0; i < 3; ++i) {
    for (auto& result : step_all(engines)) {
      REQUIRE(result.is_ok());
      CHECK_FALSE(result->switched);
    }
  }
  engines[1]->abandon_next_generation();
  for (auto& result : step_all(engines)) REQUIRE(result.is_ok());
  for (auto& engine : engines) {
    CHECK(engine->generation() == 1);
    CHECK_FALSE(engine->retired());
    // An order for the dropped generation is refused.
    CHECK_FALSE(engine->order_switch(protocol::Switch{2, false}).is_ok());
  }

  // The next scale: both switch at the same step, once both hold the order.
  build_without_order(engines, 3);
  REQUIRE(engines[0]->order_switch(protocol::Switch{3, false}).is_ok());
  for (auto& result : step_all(engines)) {
    REQUIRE(result.is_ok());
    CHECK_FALSE(result->switched);  // rank 1 has no order yet
  }
  REQUIRE(engines[1]->order_switch(protocol::Switch{3, false}).is_ok());
  auto results = step_all(engines);
  for (size_t rank = 0; rank < engines.size(); ++rank) {
    REQUIRE(results[rank].is_ok());
    CHECK(results[rank]->switched);
    CHECK(engines[rank]->generation() == 3);
  }
}
