// The continuous-batching scheduler with a stand-in model whose next token is a function of the
// whole context, so that chunking, batching and preemption must not change any output.
#include <catch2/catch.hpp>

#include <map>
#include <numeric>

#include "eep/worker/engine/scheduler.h"

using namespace eep;
using namespace eep::worker;

namespace {

int32_t fake_next_token(const EngineRequest& request) {
  uint64_t hash = static_cast<uint64_t>(request.context_len());  // wraps on purpose
  for (int64_t pos = 0; pos < request.context_len(); ++pos) {
    hash = hash * 31 + static_cast<uint64_t>(request.token_at(pos));
  }
  return static_cast<int32_t>(hash % 97) + 3;  // never 0..2
}

EngineRequest make_request(uint64_t id, int prompt_len, int max_tokens) {
  EngineRequest request;
  request.id = id;
  for (int i = 0; i < prompt_len; ++i) request.prompt.push_back((id * 7 + i) % 50 + 3);
  request.params.max_tokens = max_tokens;
  request.params.ignore_eos = true;
  return request;
}

// Runs until idle; returns each request's final output, the number of steps and the largest
// number of tokens in one step.
std::map<uint64_t, std::vector<int32_t>> run_all(Scheduler& scheduler, int* num_steps,
                                                 int* max_step_tokens) {
  std::map<uint64_t, std::vector<int32_t>> outputs;
  *num_steps = 0;
  *max_step_tokens = 0;
  while (scheduler.has_work()) {
    auto chunks = scheduler.schedule();
    REQUIRE_FALSE(chunks.empty());
    ++*num_steps;
    int step_tokens = 0;
    std::vector<int32_t> sampled;
    for (const auto& chunk : chunks) {
      step_tokens += static_cast<int>(chunk.num_tokens);
      if (!chunk.samples()) continue;
      sampled.push_back(fake_next_token(*chunk.request));
      // What the request's output is after this step (recorded before update() may drop it).
      outputs[chunk.request->id] = chunk.request->output;
      outputs[chunk.request->id].push_back(sampled.back());
    }
    *max_step_tokens = std::max(*max_step_tokens, step_tokens);
    for (const auto& finished : scheduler.update(chunks, sampled)) {
      CHECK(finished.finish_reason == "length");
    }
  }
  return outputs;
}

}  // namespace

TEST_CASE("chunked prefill, batching and preemption do not change outputs", "[scheduler]") {
  // Reference: a roomy cache and budget.
  KvBlockManager roomy_blocks(1024, 4);
  Scheduler roomy(roomy_blocks, {64, 4096, 512}, {});
  for (uint64_t id = 1; id <= 6; ++id) {
    REQUIRE(roomy.add(make_request(id, 5 + 9 * static_cast<int>(id), 12)).is_ok());
  }
  int steps = 0, max_tokens = 0;
  auto expected = run_all(roomy, &steps, &max_tokens);
  CHECK(roomy_blocks.num_free_blocks() == 1024);
  REQUIRE(expected.size() == 6);
  for (auto& [id, out] : expected) CHECK(out.size() == 12);

  // Tight: a token budget of 16 (chunked prefill) and a cache of 24 blocks of 4 (preemption).
  KvBlockManager tight_blocks(24, 4);
  Scheduler tight(tight_blocks, {4, 16, 512}, {});
  for (uint64_t id = 1; id <= 6; ++id) {
    REQUIRE(tight.add(make_request(id, 5 + 9 * static_cast<int>(id), 12)).is_ok());
  }
  auto got = run_all(tight, &steps, &max_tokens);
  CHECK(max_tokens <= 16);
  CHECK(got == expected);
  CHECK(tight_blocks.num_free_blocks() == 24);
}

TEST_CASE("requests stop on EOS, stop tokens and length, and cancel frees blocks", "[scheduler]") {
  KvBlockManager blocks(64, 4);
  Scheduler scheduler(blocks, {8, 256, 64}, {fake_next_token(make_request(1, 10, 1))});
  EngineRequest eos = make_request(1, 10, 50);
  eos.params.ignore_eos = false;  // its first token is the EOS id
  REQUIRE(scheduler.add(eos).is_ok());
  auto chunks = scheduler.schedule();
  REQUIRE(chunks.size() == 1);
  auto finished = scheduler.update(chunks, {fake_next_token(*chunks[0].request)});
  REQUIRE(finished.size() == 1);
  CHECK(finished[0].finish_reason == "stop");
  CHECK(blocks.num_free_blocks() == 64);

  EngineRequest stop = make_request(2, 4, 50);
  stop.params.stop_token_ids = {42};
  REQUIRE(scheduler.add(stop).is_ok());
  chunks = scheduler.schedule();
  finished = scheduler.update(chunks, {42});
  REQUIRE(finished.size() == 1);
  CHECK(finished[0].finish_reason == "stop");

  REQUIRE(scheduler.add(make_request(3, 4, 50)).is_ok());
  chunks = scheduler.schedule();
  CHECK(scheduler.update(chunks, {7}).empty());
  CHECK(blocks.num_free_blocks() < 64);
  CHECK(scheduler.cancel(3));
  CHECK_FALSE(scheduler.cancel(3));
  CHECK(blocks.num_free_blocks() == 64);
  CHECK_FALSE(scheduler.has_work());

  // Too long for max_model_len (64) or the cache: refused at once.
  CHECK_FALSE(scheduler.add(make_request(4, 70, 1)).is_ok());
  EngineRequest duplicate = make_request(5, 4, 2);
  REQUIRE(scheduler.add(duplicate).is_ok());
  CHECK(scheduler.add(duplicate).code() == ErrorCode::kAlreadyExists);

  // A migrated request continues after the tokens it brings.
  EngineRequest migrated = make_request(6, 4, 3);
  migrated.output = {11, 12};
  REQUIRE(scheduler.add(migrated).is_ok());
  int steps = 0, max_tokens = 0;
  auto outputs = run_all(scheduler, &steps, &max_tokens);
  REQUIRE(outputs.count(6));
  CHECK(outputs[6].size() == 3);
  CHECK(outputs[6][0] == 11);
  CHECK(outputs[6][1] == 12);
}

TEST_CASE("continuous batching: a request that arrives joins the running batch at once",
          "[scheduler]") {
  KvBlockManager blocks(256, 4);
  Scheduler scheduler(blocks, {8, 256, 512}, {});
  REQUIRE(scheduler.add(make_request(1, 6, 50)).is_ok());
  auto first = scheduler.schedule();
  REQUIRE(first.size() == 1);
  (void)scheduler.update(first, {fake_next_token(*first[0].request)});
  // Request 1 decodes; request 2 arrives: the next step runs both (2's prefill beside 1's
  // decode), not 2 after 1 has finished.
  REQUIRE(scheduler.add(make_request(2, 7, 5)).is_ok());
  auto second = scheduler.schedule();
  REQUIRE(second.size() == 2);
  CHECK(second[0].request->id == 1);
  CHECK(second[0].num_tokens == 1);  // a decode
  CHECK(second[1].request->id == 2);
  CHECK(second[1].num_tokens == 7);  // the whole prompt
  CHECK(scheduler.num_running() == 2);
  CHECK(scheduler.num_waiting() == 0);
}

TEST_CASE("max-num-seqs bounds the running requests, the rest wait in arrival order",
          "[scheduler]") {
  KvBlockManager blocks(256, 4);
  Scheduler scheduler(blocks, {2, 256, 512}, {});
  for (uint64_t id = 1; id <= 4; ++id) REQUIRE(scheduler.add(make_request(id, 3, 4)).is_ok());
  auto chunks = scheduler.schedule();
  REQUIRE(chunks.size() == 2);
  CHECK(chunks[0].request->id == 1);
  CHECK(chunks[1].request->id == 2);
  CHECK(scheduler.num_running() == 2);
  CHECK(scheduler.num_waiting() == 2);
  int steps = 0, max_tokens = 0;
  (void)scheduler.update(
      chunks, {fake_next_token(*chunks[0].request), fake_next_token(*chunks[1].request)});
  auto outputs = run_all(scheduler, &steps, &max_tokens);
  CHECK(outputs.size() == 4);
}

TEST_CASE("when the cache is full the newest running request is preempted, the oldest goes on",
          "[scheduler]") {
  // 6 blocks of 4 positions: two requests of 8 prompt tokens fill 4 blocks; their decodes need
  // more, and only the newer one gives its blocks back.
  KvBlockManager blocks(6, 4);
  Scheduler scheduler(blocks, {8, 256, 512}, {});
  REQUIRE(scheduler.add(make_request(1, 8, 12)).is_ok());
  REQUIRE(scheduler.add(make_request(2, 8, 12)).is_ok());
  bool preempted = false;
  while (scheduler.has_work() && !preempted) {
    auto chunks = scheduler.schedule();
    std::vector<int32_t> sampled;
    for (const auto& chunk : chunks) {
      if (chunk.samples()) sampled.push_back(fake_next_token(*chunk.request));
    }
    (void)scheduler.update(chunks, sampled);
    const EngineRequest* newer = scheduler.find(2);
    preempted = newer != nullptr && newer->num_preemptions > 0;
    const EngineRequest* older = scheduler.find(1);
    if (older != nullptr) CHECK(older->num_preemptions == 0);
  }
  CHECK(preempted);
}

TEST_CASE("of three running requests the newest is preempted, not the one after the current",
          "[scheduler]") {
  // 4 blocks of 4 positions: request 1's 8 prompt tokens take 2, requests 2 (3 tokens) and 3 (4)
  // one each, and nothing is left. At the next step request 1 (the oldest) needs a third block:
  // request 3, the newest, gives its block back; request 2 still fits in its block and goes on.
  KvBlockManager blocks(4, 4);
  Scheduler scheduler(blocks, {8, 256, 512}, {});
  REQUIRE(scheduler.add(make_request(1, 8, 4)).is_ok());
  REQUIRE(scheduler.add(make_request(2, 3, 4)).is_ok());
  REQUIRE(scheduler.add(make_request(3, 4, 4)).is_ok());
  auto step = [&] {
    auto chunks = scheduler.schedule();
    std::vector<uint64_t> ids;
    std::vector<int32_t> sampled;
    for (const auto& chunk : chunks) {
      ids.push_back(chunk.request->id);
      if (chunk.samples()) sampled.push_back(fake_next_token(*chunk.request));
    }
    CHECK(scheduler.update(chunks, sampled).empty());
    return ids;
  };
  CHECK(step() == std::vector<uint64_t>{1, 2, 3});
  CHECK(blocks.num_free_blocks() == 0);
  CHECK(step() == std::vector<uint64_t>{1, 2});
  REQUIRE(scheduler.find(3) != nullptr);
  CHECK(scheduler.find(3)->num_preemptions == 1);
  CHECK(scheduler.find(2)->num_preemptions == 0);
  CHECK(scheduler.find(1)->num_preemptions == 0);
}

TEST_CASE("with ignore_eos the EOS token does not stop a request, a stop token still does",
          "[scheduler]") {
  const int32_t kEos = 2;
  KvBlockManager blocks(64, 4);
  Scheduler scheduler(blocks, {8, 256, 64}, {kEos});
  EngineRequest request = make_request(1, 4, 50);
  REQUIRE(request.params.ignore_eos);
  request.params.stop_token_ids = {42};
  REQUIRE(scheduler.add(request).is_ok());
  auto chunks = scheduler.schedule();
  CHECK(scheduler.update(chunks, {kEos}).empty());
  chunks = scheduler.schedule();
  REQUIRE(chunks.size() == 1);
  CHECK(chunks[0].request->output == std::vector<int32_t>{kEos});
  const auto finished = scheduler.update(chunks, {42});
  REQUIRE(finished.size() == 1);
  CHECK(finished[0].finish_reason == "stop");
}
