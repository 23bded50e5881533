// Our CPU Qwen3-MoE forward against transformers (tests/data/golden, made by
// scripts/gpu/make_golden.py): prefill logits at every prompt position, step-by-step decode
// through the paged KV cache, greedy continuations token for token; per-expert and fused expert
// layouts; prompts run one by one and all together in mixed batches with chunked prefill. Every
// row is compared with the same model run in float64 (references.safetensors), within a few
// times the distance of transformers' own fp32 rows to it.
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
// Our fp32 forward may be this many times as far from the float64 reference as transformers' fp32
// forward is (the largest row error over every golden row; the figures are in
// tests/data/golden/README.md). Both are fp32 with the same formulas and differ only in the order
// of summation, so their distances are of one size.
constexpr double kNoiseFactor = 3.0;

struct GoldenPrompt {
  std::vector<int32_t> prompt;
  std::vector<int32_t> greedy;
  std::vector<float> prefill_logits;  // [len, vocab], transformers fp32
  std::vector<float> decode_logits;   // [16, vocab], transformers fp32
  std::vector<double> prefill_fp64;   // the same rows in float64
  std::vector<double> decode_fp64;
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
  auto references = SafetensorsFile::open(kGoldenDir + "/references.safetensors");
  REQUIRE(references.is_ok());
  std::vector<GoldenPrompt> prompts(kNumPrompts);
  for (int i = 0; i < kNumPrompts; ++i) {
    const std::string p = "prompt" + std::to_string(i) + ".";
    prompts[i].prompt = read_tensor<int32_t, int64_t>(file.value(), p + "prompt_ids");
    prompts[i].greedy = read_tensor<int32_t, int64_t>(file.value(), p + "greedy_ids");
    prompts[i].prefill_logits = read_tensor<float, float>(file.value(), p + "prefill_logits");
    prompts[i].decode_logits = read_tensor<float, float>(file.value(), p + "decode_logits");
    prompts[i].prefill_fp64 =
        read_tensor<double, double>(references.value(), p + "prefill_logits_fp64");
    prompts[i].decode_fp64 =
        read_tensor<double, double>(references.value(), p + "decode_logits_fp64");
    REQUIRE(prompts[i].prefill_fp64.size() == prompts[i].prefill_logits.size());
    REQUIRE(prompts[i].decode_fp64.size() == prompts[i].decode_logits.size());
  }
  return prompts;
}

double relative_error(const float* ours, const double* theirs, int64_t n) {
  double max_diff = 0.0, max_ref = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(ours[i])) return INFINITY;
    max_diff = std::max(max_diff, std::abs(static_cast<double>(ours[i]) - theirs[i]));
    max_ref = std::max(max_ref, std::abs(theirs[i]));
  }
  return max_diff / max_ref;
}

// transformers' fp32 rows against the float64 ones: the largest row error over every golden row.
double fp32_noise(const std::vector<GoldenPrompt>& golden, int64_t vocab) {
  double noise = 0.0;
  for (const GoldenPrompt& g : golden) {
    for (size_t r = 0; r * vocab < g.prefill_logits.size(); ++r) {
      noise = std::max(noise, relative_error(g.prefill_logits.data() + r * vocab,
                                             g.prefill_fp64.data() + r * vocab, vocab));
    }
    for (size_t r = 0; r * vocab < g.decode_logits.size(); ++r) {
      noise = std::max(noise, relative_error(g.decode_logits.data() + r * vocab,
                                             g.decode_fp64.data() + r * vocab, vocab));
    }
  }
  return noise;
}

// The tolerance of every row below: kNoiseFactor times the measured fp32 noise.
double tolerance(const std::vector<GoldenPrompt>& golden) {
  const double noise = fp32_noise(golden, 512);
  INFO("transformers fp32 vs float64: largest row error " << noise);
  // The data's own sanity: fp32 is a few ulps of a row's largest logit from float64.
  REQUIRE(noise > 0.0);
  REQUIRE(noise < 1e-5);
  return kNoiseFactor * noise;
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
// Returns the largest row error.
double check_one_by_one(Model& model, const std::vector<GoldenPrompt>& golden, double tol) {
  double worst = 0.0;
  auto check_row = [&](const float* ours, const double* reference) {
    const double error = relative_error(ours, reference, model.vocab);
    worst = std::max(worst, error);
    CHECK(error < tol);
  };
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
      check_row(prefill->row(0, p), g.prefill_fp64.data() + p * model.vocab);
    }
    std::vector<int32_t> ours = {argmax(prefill->row(0), model.vocab)};
    for (int j = 0; j < kNumDecode; ++j) {
      INFO("decode step " << j);
      auto step =
          model.runner->forward({{seq, len + j, {g.greedy[j]}, false}}, *model.blocks, *model.moe);
      REQUIRE(step.is_ok());
      check_row(step->row(0), g.decode_fp64.data() + j * model.vocab);
      if (j + 1 < kNumDecode) ours.push_back(argmax(step->row(0), model.vocab));
      // Continue on our own token, so the continuation is ours end to end.
      if (ours.back() != g.greedy[j + (j + 1 < kNumDecode ? 1 : 0)]) break;
    }
    CHECK(ours == g.greedy);
    model.blocks->release(seq);
  }
  return worst;
}

}  // namespace

// The test that catches a wrong rmsnorm eps: 1e-5 instead of the config's 1e-6 moves the logits
// by about ten times the tolerance (scripts/gpu/make_golden.py measures that mutation too, see
// references.json), where the old 1e-4 of a row's largest logit let it through.
TEST_CASE("the CPU forward is within fp32 noise of float64 on every golden prompt",
          "[model][golden]") {
  const auto golden = load_golden();
  const double tol = tolerance(golden);
  for (const char* layout : {"model", "model-fused"}) {
    INFO("checkpoint " << layout << ", tolerance " << tol);
    Model model = load_model(kGoldenDir + "/" + layout);
    const double worst = check_one_by_one(model, golden, tol);
    WARN(layout << ": largest row error vs float64 " << worst
                << " (transformers fp32: " << tol / kNoiseFactor << ")");
  }
}

TEST_CASE("mixed batches with chunked prefill give the same logits as single prompts",
          "[model][golden]") {
  const auto golden = load_golden();
  const double tol = tolerance(golden);
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
      CHECK(relative_error(out1->row(i, p), golden[i].prefill_fp64.data() + p * model.vocab,
                           model.vocab) < tol);
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
    CHECK(relative_error(out2->row(i), golden[i].decode_fp64.data(), model.vocab) < tol);
  }
  for (int64_t p = 0; p < static_cast<int64_t>(tail.size()); ++p) {
    INFO("prompt 4 position " << 20 + p);
    CHECK(relative_error(out2->row(4, p), golden[4].prefill_fp64.data() + (20 + p) * model.vocab,
                         model.vocab) < tol);
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
      CHECK(relative_error(out->row(i), golden[i].decode_fp64.data() + k * model.vocab,
                           model.vocab) < tol);
    }
  }
}
