// The engine's generations (DESIGN.md section 6): the ranks of a new generation agree on their KV
// cache size (the fewest blocks of any rank) while they build it, and serve with it from the
// switch on. Ranks are threads with Gloo groups over loopback.
#include <catch2/catch.hpp>

#include <thread>

#include "eep/worker/random_checkpoint.h"
#include "engine_fixture.h"
#include "scratch_dir.h"

using namespace eep;
using namespace eep::worker;

namespace {

const std::string& tiny_model() {
  static const std::string dir = [] {
    const auto path = eep::testing::process_scratch_dir("eep_test_engine_generation") / "tiny";
    auto config = model_preset("tiny");
    REQUIRE(config.is_ok());
    REQUIRE(write_random_checkpoint(config.value(), RandomCheckpointOptions{}, path).is_ok());
    return path.string();
  }();
  return dir;
}

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
  const int block_size = EngineOptions{}.block_size;
  const std::vector<int> own_blocks = {96, 40};
  std::vector<std::unique_ptr<EngineCore>> engines;
  for (int blocks : own_blocks) engines.push_back(eep::testing::make_engine(tiny_model(), blocks));
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
