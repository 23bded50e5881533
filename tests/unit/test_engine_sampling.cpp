// The engine's side of the OpenAI sampling fields (engine/sampling.h): a request's penalties read
// its own prompt and output, its log-probabilities come back one per token, a resubmitted request
// (migration) continues with the same penalties, and bad parameters are refused at submit. One
// rank over a generated tiny model.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "eep/worker/engine/engine_core.h"
#include "eep/worker/engine/sampling.h"
#include "eep/worker/model/random_checkpoint.h"
#include "engine_fixture.h"
#include "scratch_dir.h"

using namespace eep;
using namespace eep::worker;

namespace {

constexpr int kVocab = 512;  // the tiny preset's
constexpr int kMaxSamplingSteps = 1000;

std::unique_ptr<EngineCore> serving_engine() {
  REQUIRE(model_preset("tiny").value().vocab_size == kVocab);
  auto engine = eep::testing::make_engine(eep::testing::tiny_model());
  protocol::Assign assign;
  assign.generation = 1;
  assign.rank = 0;
  assign.world_size = 1;
  assign.members = {"w0"};
  REQUIRE(eep::testing::build(*engine, assign).is_ok());
  return engine;
}

protocol::SubmitRequest request_of(uint64_t id, int max_tokens) {
  protocol::SubmitRequest request;
  request.request_id = id;
  std::mt19937 rng(11);
  request.prompt_ids.resize(12);
  for (int32_t& t : request.prompt_ids) t = static_cast<int32_t>(rng() % kVocab);
  request.params.max_tokens = max_tokens;
  request.params.ignore_eos = true;
  return request;
}

struct Generated {
  std::vector<int32_t> tokens;
  std::vector<protocol::TokenLogprobs> logprobs;
  std::vector<size_t> num_logprobs_per_output;  // of each RequestOutput carrying tokens
  std::string finish_reason;
};

// Submits `requests` and steps until the engine goes idle.
std::map<uint64_t, Generated> generate(EngineCore& engine,
                                       const std::vector<protocol::SubmitRequest>& requests) {
  for (const auto& request : requests) {
    const auto refused = engine.submit(request);
    INFO((refused ? refused->error : std::string()));
    REQUIRE_FALSE(refused.has_value());
  }
  std::map<uint64_t, Generated> generated;
  for (int i = 0; i < kMaxSamplingSteps; ++i) {
    auto step = engine.step(0);
    REQUIRE(step.is_ok());
    for (const protocol::RequestOutput& out : step.value().outputs) {
      Generated& g = generated[out.request_id];
      g.tokens.insert(g.tokens.end(), out.new_tokens.begin(), out.new_tokens.end());
      g.logprobs.insert(g.logprobs.end(), out.logprobs.begin(), out.logprobs.end());
      if (!out.new_tokens.empty()) g.num_logprobs_per_output.push_back(out.logprobs.size());
      if (out.finished) g.finish_reason = out.finish_reason;
    }
    if (step.value().idle) return generated;
  }
  FAIL("the engine never went idle");
  return generated;
}

}  // namespace

TEST_CASE("engine sampling: penalties change greedy tokens, log-probabilities come per token",
          "[engine_sampling]") {
  auto engine = serving_engine();
  const int max_tokens = 24;
  const protocol::SubmitRequest plain = request_of(1, max_tokens);
  protocol::SubmitRequest plain_logprobs = request_of(2, max_tokens);
  plain_logprobs.params.logprobs = 3;
  protocol::SubmitRequest repetition = request_of(3, max_tokens);
  repetition.params.repetition_penalty = 1.3f;
  repetition.params.logprobs = 0;
  // Every id's log-probability, so the test can redo the additive penalties' greedy choice.
  protocol::SubmitRequest additive = request_of(4, max_tokens);
  additive.params.frequency_penalty = 1.5f;
  additive.params.presence_penalty = 0.5f;
  additive.params.logprobs = kVocab;
  auto generated = generate(*engine, {plain, plain_logprobs, repetition, additive});

  for (uint64_t id = 1; id <= 4; ++id) {
    CAPTURE(id);
    REQUIRE(generated[id].tokens.size() == static_cast<size_t>(max_tokens));
    CHECK(generated[id].finish_reason == "length");
  }
  const Generated& a = generated[1];
  // Without logprobs none arrive; asking for them does not change the tokens.
  CHECK(a.logprobs.empty());
  CHECK(generated[2].tokens == a.tokens);
  // The unpenalised greedy run repeats itself (a random model does), so the penalties have
  // something to act on, and they change the tokens.
  CHECK(std::set<int32_t>(a.tokens.begin(), a.tokens.end()).size() < a.tokens.size());
  CHECK(generated[3].tokens != a.tokens);
  CHECK(generated[4].tokens != a.tokens);

  // One entry per token, in every output; greedy without penalties takes the most likely id.
  for (uint64_t id = 2; id <= 4; ++id) {
    const Generated& g = generated[id];
    CAPTURE(id);
    REQUIRE(g.logprobs.size() == g.tokens.size());
    for (size_t n : g.num_logprobs_per_output) CHECK(n == 1);
    const size_t num_top = id == 2 ? 3 : id == 3 ? 0 : kVocab;
    for (size_t t = 0; t < g.tokens.size(); ++t) {
      const protocol::TokenLogprobs& entry = g.logprobs[t];
      CAPTURE(t);
      CHECK(entry.logprob <= 0.0f);
      REQUIRE(entry.top_ids.size() == num_top);
      REQUIRE(entry.top_logprobs.size() == num_top);
      CHECK(std::is_sorted(entry.top_logprobs.rbegin(), entry.top_logprobs.rend()));
      if (id == 2) {
        CHECK(entry.top_ids[0] == g.tokens[t]);
        CHECK(entry.top_logprobs[0] == entry.logprob);
      }
    }
  }

  // The additive penalties shift each log-probability as they shift its logit, so the greedy
  // choice is the argmax of logprob - frequency * count - presence * (count > 0) over the tokens
  // generated before: checked where that argmax is clear of rounding.
  const Generated& d = generated[4];
  std::vector<int> count(kVocab, 0);
  int num_checked = 0;
  for (size_t t = 0; t < d.tokens.size(); ++t) {
    std::vector<double> penalised(kVocab, -std::numeric_limits<double>::infinity());
    const protocol::TokenLogprobs& entry = d.logprobs[t];
    for (size_t k = 0; k < entry.top_ids.size(); ++k) {
      const int32_t tok = entry.top_ids[k];
      penalised[tok] = entry.top_logprobs[k] - 1.5 * count[tok] - (count[tok] > 0 ? 0.5 : 0.0);
    }
    std::vector<double> sorted = penalised;
    std::sort(sorted.rbegin(), sorted.rend());
    if (sorted[0] - sorted[1] > 1e-3) {
      ++num_checked;
      CAPTURE(t);
      CHECK(d.tokens[t] ==
            std::max_element(penalised.begin(), penalised.end()) - penalised.begin());
    }
    ++count[d.tokens[t]];
  }
  CHECK(num_checked > max_tokens / 2);
}

TEST_CASE("engine sampling: a resubmitted request continues with the penalties of its output",
          "[engine_sampling]") {
  auto engine = serving_engine();
  protocol::SubmitRequest whole = request_of(1, 20);
  whole.params.temperature = 0.8f;
  whole.params.seed = 99;
  whole.params.top_k = 50;
  whole.params.min_p = 0.01f;
  whole.params.repetition_penalty = 1.2f;
  whole.params.frequency_penalty = 0.7f;
  whole.params.presence_penalty = 0.3f;
  auto first = generate(*engine, {whole});
  const std::vector<int32_t>& tokens = first[1].tokens;
  REQUIRE(tokens.size() == 20);

  // As the router resubmits a migrated request: the prompt and the tokens so far. The rest
  // depends on those tokens through the penalties (and on their number through the draws).
  protocol::SubmitRequest resumed = whole;
  resumed.request_id = 2;
  resumed.output_ids.assign(tokens.begin(), tokens.begin() + 8);
  auto second = generate(*engine, {resumed});
  CHECK(second[2].tokens == std::vector<int32_t>(tokens.begin() + 8, tokens.end()));
}

TEST_CASE("engine sampling: out-of-range sampling parameters are refused, naming the field",
          "[engine_sampling]") {
  auto engine = eep::testing::make_engine(eep::testing::tiny_model());
  auto refused_for = [&](auto&& change) {
    protocol::SubmitRequest request = request_of(1, 8);
    change(request);
    const auto refused = engine->submit(request);
    REQUIRE(refused.has_value());
    CHECK(refused->finished);
    CHECK(refused->finish_reason == "error");
    return refused->error;
  };
  using Catch::Contains;
  using R = protocol::SubmitRequest;
  CHECK_THAT(refused_for([](R& r) { r.params.top_k = -1; }), Contains("top_k"));
  CHECK_THAT(refused_for([](R& r) { r.params.min_p = 1.5f; }), Contains("min_p"));
  CHECK_THAT(refused_for([](R& r) { r.params.min_p = -0.1f; }), Contains("min_p"));
  CHECK_THAT(refused_for([](R& r) { r.params.frequency_penalty = 2.5f; }),
             Contains("frequency_penalty"));
  CHECK_THAT(refused_for([](R& r) { r.params.presence_penalty = std::nanf(""); }),
             Contains("presence_penalty"));
  CHECK_THAT(refused_for([](R& r) { r.params.repetition_penalty = 0.0f; }),
             Contains("repetition_penalty"));
  CHECK_THAT(refused_for([](R& r) { r.params.repetition_penalty = INFINITY; }),
             Contains("repetition_penalty"));
  CHECK_THAT(refused_for([](R& r) { r.params.logprobs = -2; }), Contains("logprobs"));
  // The penalties read the output's ids: one outside the vocabulary is refused too.
  CHECK_THAT(refused_for([](R& r) {
               r.output_ids = {3, kVocab};
             }),
             Contains("outside the vocabulary"));
  // In range (the edges included) passes the check: this engine is simply not serving yet.
  const std::string accepted = refused_for([](R& r) {
    r.params.top_k = 1;
    r.params.min_p = 1.0f;
    r.params.frequency_penalty = -2.0f;
    r.params.presence_penalty = 2.0f;
    r.params.repetition_penalty = 0.01f;
    r.params.logprobs = 0;
  });
  CHECK_THAT(accepted, Contains("not serving"));
}
