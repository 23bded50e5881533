// Our CPU Qwen3-MoE forward against transformers' logits (tests/data/golden, made by
// scripts/gpu/make_golden.py): prefill logits at every prompt position, step-by-step decode
// through the paged KV cache, greedy continuations token for token; per-expert and fused expert
// layouts; prompts run one by one and all together in mixed batches with chunked prefill.
#include <catch2/catch.hpp>

#include <cmath>

#include "eep/worker/cpu/model_runner_cpu.h"
#include "eep/worker/model/checkpoint.h"
#include "eep/worker/model/safetensors.h"

using namespace eep;
using namespace eep::worker;

namespace {

const std::string kGoldenDir = std::string(EEP_TEST_DATA_DIR) + "/golden";
constexpr int kNumPrompts = 5;
constexpr int kNumDecode = 16;
// Max |ours - theirs| over a row, relative to the row's largest |theirs|.
constexpr double kMaxRelativeError = 1e-4;

struct GoldenPrompt {
  std::vector<int32_t> prompt;
  std::vector<int32_t> greedy;
  std::vector<float> prefill_logits;  // [len, vocab]
  std::vector<float> decode_logits;   // [16, vocab]
};

template <typename T, typename Stored>
std::vector<T> read_tensor(const SafetensorsFile& file, const std::string& name) {
  const TensorInfo* info = file.find(name);
  REQUIRE(info != nullptr);
  auto bytes = file.data(*info);
  std::vector<Stored> stored(bytes.size() / sizeof(Stored));
  std::memcpy(stored.data(), bytes.data(), bytes.size());
  return std::vector<T>(stored.begin(), stored.end());
}

std::vector<GoldenPrompt> load_golden() {
  auto file = SafetensorsFile::open(kGoldenDir + "/golden.safetensors");
  REQUIRE(file.is_ok());
  std::vector<GoldenPrompt> prompts(kNumPrompts);
  for (int i = 0; i < kNumPrompts; ++i) {
    const std::string p = "prompt" + std::to_string(i) + ".";
    prompts[i].prompt = read_tensor<int32_t, int64_t>(file.value(), p + "prompt_ids");
    prompts[i].greedy = read_tensor<int32_t, int64_t>(file.value(), p + "greedy_ids");
    prompts[i].prefill_logits = read_tensor<float, float>(file.value(), p + "prefill_logits");
    prompts[i].decode_logits = read_tensor<float, float>(file.value(), p + "decode_logits");
  }
  return prompts;
}

double relative_error(const float* ours, const float* theirs, int64_t n) {
  double max_diff = 0.0, max_ref = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(ours[i])) return INFINITY;
    max_diff = std::max(max_diff, std::abs(static_cast<double>(ours[i]) - theirs[i]));
    max_ref = std::max(max_ref, std::abs(static_cast<double>(theirs[i])));
  }
  return max_diff / max_ref;
}

int32_t argmax(const float* row, int64_t n) {
  return static_cast<int32_t>(std::max_element(row, row + n) - row);
}

struct Model {
  std::unique_ptr<ModelRunner> runner;
  std::unique_ptr<MoeDispatcher> moe;
  std::unique_ptr<KvBlockManager> blocks;
  int64_t vocab = 0;
};

// Block size 4, so that every prompt spans several blocks.
Model load_model(const std::string& dir) {
  auto checkpoint = Checkpoint::open(dir);
  REQUIRE(checkpoint.is_ok());
  const ModelConfig& config = checkpoint->config();
  auto placement =
      Placement::round_robin(config.num_hidden_layers, config.num_experts, 1, config.num_experts);
  REQUIRE(placement.is_ok());
  auto weights = ModelWeights::load(checkpoint.value(), placement.value(), 0);
  REQUIRE(weights.is_ok());
  Model model;
  model.vocab = config.vocab_size;
  model.runner = std::make_unique<ModelRunner>(std::move(weights).value(), 256, 4);
  model.moe = std::make_unique<MoeDispatcher>(placement.value(), 0, nullptr);
  model.blocks = std::make_unique<KvBlockManager>(256, 4);
  return model;
}

// Each prompt alone: prefill (all positions), then our own greedy loop through the KV cache.
void check_one_by_one(Model& model, const std::vector<GoldenPrompt>& golden) {
  for (int i = 0; i < kNumPrompts; ++i) {
    INFO("prompt " << i);
    const GoldenPrompt& g = golden[i];
    const uint64_t seq = 100 + i;
    const int64_t len = static_cast<int64_t>(g.prompt.size());
    REQUIRE(model.blocks->reserve(seq, len + kNumDecode).is_ok());
    auto prefill = model.runner->forward({{seq, 0, g.prompt, true}}, *model.blocks, *model.moe);
    REQUIRE(prefill.is_ok());
    for (int64_t p = 0; p < len; ++p) {
      INFO("position " << p);
      CHECK(relative_error(prefill->row(0, p), g.prefill_logits.data() + p * model.vocab,
                           model.vocab) < kMaxRelativeError);
    }
    std::vector<int32_t> ours = {argmax(prefill->row(0), model.vocab)};
    for (int j = 0; j < kNumDecode; ++j) {
      INFO("decode step " << j);
      auto step =
          model.runner->forward({{seq, len + j, {g.greedy[j]}, false}}, *model.blocks, *model.moe);
      REQUIRE(step.is_ok());
      CHECK(relative_error(step->row(0), g.decode_logits.data() + j * model.vocab, model.vocab) <
            kMaxRelativeError);
      if (j + 1 < kNumDecode) ours.push_back(argmax(step->row(0), model.vocab));
      // Continue on our own token, so the continuation is ours end to end.
      if (ours.back() != g.greedy[j + (j + 1 < kNumDecode ? 1 : 0)]) break;
    }
    CHECK(ours == g.greedy);
    model.blocks->release(seq);
  }
}

}  // namespace

TEST_CASE("the CPU forward reproduces transformers on every golden prompt", "[model][golden]") {
  const auto golden = load_golden();
  SECTION("per-expert checkpoint (what save_pretrained wrote)") {
    Model model = load_model(kGoldenDir + "/model");
    check_one_by_one(model, golden);
  }
  SECTION("fused expert checkpoint") {
    Model model = load_model(kGoldenDir + "/model-fused");
    check_one_by_one(model, golden);
  }
}

TEST_CASE("mixed batches with chunked prefill give the same logits as single prompts",
          "[model][golden]") {
  const auto golden = load_golden();
  Model model = load_model(kGoldenDir + "/model");
  // Step 1: prompts 0-3 whole, prompt 4's first 20 tokens. Step 2: prompt 4's rest together with
  // the first decode token of prompts 0-3. Then decode everyone together.
  std::vector<int64_t> pos(kNumPrompts, 0);
  for (int i = 0; i < kNumPrompts; ++i) {
    REQUIRE(model.blocks->reserve(i, golden[i].prompt.size() + kNumDecode).is_ok());
  }
  std::vector<SequenceChunk> step1;
  for (int i = 0; i < 4; ++i)
    step1.push_back({static_cast<uint64_t>(i), 0, golden[i].prompt, true});
  const std::vector<int32_t> head(golden[4].prompt.begin(), golden[4].prompt.begin() + 20);
  const std::vector<int32_t> tail(golden[4].prompt.begin() + 20, golden[4].prompt.end());
  step1.push_back({4, 0, head, true});
  auto out1 = model.runner->forward(step1, *model.blocks, *model.moe);
  REQUIRE(out1.is_ok());
  for (int i = 0; i < kNumPrompts; ++i) {
    for (int64_t p = 0; p < static_cast<int64_t>(step1[i].token_ids.size()); ++p) {
      INFO("prompt " << i << " position " << p);
      CHECK(relative_error(out1->row(i, p), golden[i].prefill_logits.data() + p * model.vocab,
                           model.vocab) < kMaxRelativeError);
    }
  }
  std::vector<SequenceChunk> step2;
  for (int i = 0; i < 4; ++i) {
    step2.push_back({static_cast<uint64_t>(i),
                     static_cast<int64_t>(golden[i].prompt.size()),
                     {golden[i].greedy[0]},
                     false});
  }
  step2.push_back({4, 20, tail, true});
  auto out2 = model.runner->forward(step2, *model.blocks, *model.moe);
  REQUIRE(out2.is_ok());
  for (int i = 0; i < 4; ++i) {
    INFO("prompt " << i << " decode 0");
    CHECK(relative_error(out2->row(i), golden[i].decode_logits.data(), model.vocab) <
          kMaxRelativeError);
  }
  for (int64_t p = 0; p < static_cast<int64_t>(tail.size()); ++p) {
    INFO("prompt 4 position " << 20 + p);
    CHECK(relative_error(out2->row(4, p), golden[4].prefill_logits.data() + (20 + p) * model.vocab,
                         model.vocab) < kMaxRelativeError);
  }
  // Everyone decodes together for the remaining steps (prompt 4 starts one step behind).
  for (int j = 1; j < kNumDecode; ++j) {
    std::vector<SequenceChunk> step;
    for (int i = 0; i < 4; ++i) {
      step.push_back({static_cast<uint64_t>(i),
                      static_cast<int64_t>(golden[i].prompt.size()) + j,
                      {golden[i].greedy[j]},
                      false});
    }
    step.push_back({4,
                    static_cast<int64_t>(golden[4].prompt.size()) + j - 1,
                    {golden[4].greedy[j - 1]},
                    false});
    auto out = model.runner->forward(step, *model.blocks, *model.moe);
    REQUIRE(out.is_ok());
    for (int i = 0; i < kNumPrompts; ++i) {
      INFO("prompt " << i << " decode step " << j);
      const int k = i < 4 ? j : j - 1;
      CHECK(relative_error(out->row(i), golden[i].decode_logits.data() + k * model.vocab,
                           model.vocab) < kMaxRelativeError);
    }
  }
}

// The tolerance above (1e-4 of a row's largest logit) lets a wrong rmsnorm eps through: 1e-5
// instead of the config's 1e-6 moves the logits by 2.5e-5 of the row's largest. Our fp32
// forward's distance to transformers' fp32 logits over every prefill position of the golden
// prompts is 2.5e-6 (measured on x86-64, GCC 12, -O2: the order of summation differs, not the
// formula). 1e-5 leaves that noise a factor of 4 for another compiler or CPU and still catches
// the eps change by a factor of 2.5.
constexpr double kMaxFp32RelativeError = 1e-5;

TEST_CASE("the CPU forward stays within fp32 noise of transformers (catches a wrong eps)",
          "[model][golden]") {
  const auto golden = load_golden();
  Model model = load_model(kGoldenDir + "/model");
  double max_error = 0.0;
  for (int i = 0; i < kNumPrompts; ++i) {
    const GoldenPrompt& g = golden[i];
    const int64_t len = static_cast<int64_t>(g.prompt.size());
    REQUIRE(model.blocks->reserve(i, len).is_ok());
    auto prefill = model.runner->forward({{static_cast<uint64_t>(i), 0, g.prompt, true}},
                                         *model.blocks, *model.moe);
    REQUIRE(prefill.is_ok());
    for (int64_t p = 0; p < len; ++p) {
      max_error = std::max(
          max_error, relative_error(prefill->row(0, p), g.prefill_logits.data() + p * model.vocab,
                                    model.vocab));
    }
  }
  INFO("largest relative error over every prefill position: " << max_error);
  CHECK(max_error < kMaxFp32RelativeError);
}
