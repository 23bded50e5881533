// The sampling fields of the OpenAI API in the CPU sampler (kernels/sampling.h): penalties,
// top_k, min_p and raw log-probabilities, on hand-made logits whose outcome is worked out in the
// comments, against a reference written here from sampling.h's words (sort everything, scan),
// and log-probabilities against a double-precision log-softmax.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "eep/kernels/sampling.h"

namespace cpu = eep::kernels::cpu;

namespace {

// A row's options over vectors the test owns.
struct Row {
  cpu::SamplingOptions options;
  std::vector<int32_t> prompt;
  std::vector<int32_t> output;

  const cpu::SamplingOptions& bind() {
    options.prompt_ids = prompt.data();
    options.num_prompt_ids = static_cast<int64_t>(prompt.size());
    options.output_ids = output.data();
    options.num_output_ids = static_cast<int64_t>(output.size());
    return options;
  }
};

int32_t draw(const std::vector<float>& logits, Row& row) {
  std::vector<std::byte> scratch(cpu::sampling_scratch_bytes(static_cast<int64_t>(logits.size())));
  return cpu::sample_token(logits.data(), static_cast<int64_t>(logits.size()), row.bind(),
                           scratch.data());
}

int32_t greedy(const std::vector<float>& logits, Row row) {
  row.options.temperature = 0.0f;
  return draw(logits, row);
}

// Frequencies of the ids drawn over `num_draws` seeds.
std::vector<double> frequencies(const std::vector<float>& logits, Row row, int num_draws = 20000) {
  std::vector<double> count(logits.size(), 0.0);
  for (int seed = 0; seed < num_draws; ++seed) {
    row.options.seed = static_cast<uint64_t>(seed);
    count[draw(logits, row)] += 1.0;
  }
  for (double& c : count) c /= num_draws;
  return count;
}

// Probabilities 0.1, 0.2, 0.3, 0.4 at temperature 1. Three standard deviations of a frequency
// from 20000 draws are below 0.011.
const std::vector<float> kFour = {std::log(0.1f), std::log(0.2f), std::log(0.3f), std::log(0.4f)};
constexpr double kTolerance = 0.011;

void check_frequencies(const std::vector<double>& got, const std::vector<double>& expected) {
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i, got[i], expected[i]);
    if (expected[i] == 0.0) {
      CHECK(got[i] == 0.0);
    } else {
      CHECK(std::fabs(got[i] - expected[i]) < kTolerance);
    }
  }
}

// sample_token as sampling.h words it, every step in full: penalties applied unconditionally
// (a neutral value changes nothing), everything sorted, prefixes scanned.
int32_t reference_sample(const std::vector<float>& logits, const Row& row) {
  const cpu::SamplingOptions& o = row.options;
  const int64_t vocab = static_cast<int64_t>(logits.size());
  std::vector<float> y = logits;
  std::set<int32_t> seen(row.prompt.begin(), row.prompt.end());
  seen.insert(row.output.begin(), row.output.end());
  const float r = o.repetition_penalty;
  for (int32_t id : seen) y[id] = y[id] > 0.0f ? y[id] / r : y[id] * r;
  std::map<int32_t, int> count;
  for (int32_t id : row.output) ++count[id];
  for (const auto& [id, c] : count) {
    y[id] = y[id] - o.frequency_penalty * static_cast<float>(c);
    y[id] = y[id] - o.presence_penalty;
  }
  int32_t argmax = 0;
  for (int32_t i = 1; i < vocab; ++i) {
    if (y[i] > y[argmax]) argmax = i;
  }
  if (o.temperature <= 0.0f) return argmax;
  const float m = y[argmax];
  std::vector<float> e(vocab), p(vocab);
  double s = 0.0;
  for (int64_t i = 0; i < vocab; ++i) s += (e[i] = std::exp((y[i] - m) / o.temperature));
  for (int64_t i = 0; i < vocab; ++i) p[i] = static_cast<float>(e[i] / s);
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
  int64_t num_kept = vocab;
  if (o.min_p > 0.0f) {
    const float threshold = o.min_p * p[argmax];
    num_kept = std::count_if(p.begin(), p.end(), [&](float v) { return v >= threshold; });
  }
  if (o.top_k > 0) num_kept = std::min(num_kept, o.top_k);
  double kept_mass = 1.0;
  if ((o.top_k > 0 && o.top_k < vocab) || o.min_p > 0.0f) {
    std::vector<int64_t> rank(vocab);
    for (int64_t j = 0; j < vocab; ++j) rank[order[j]] = j;
    kept_mass = 0.0;
    for (int64_t i = 0; i < vocab; ++i) {
      if (rank[i] < num_kept) kept_mass += p[i];
    }
  }
  int64_t nucleus = 0;
  double mass = 0.0;
  do {
    mass += p[order[nucleus++]];
  } while (nucleus < num_kept && mass < static_cast<double>(o.top_p) * kept_mass);
  const double target = cpu::sampling_uniform(o.seed, o.step) * mass;
  double running = 0.0;
  for (int64_t i = 0; i < nucleus; ++i) {
    running += p[order[i]];
    if (running > target) return order[i];
  }
  return order[nucleus - 1];
}

}  // namespace

TEST_CASE("sampling: repetition penalty divides positive and multiplies negative logits, once",
          "[kernels][sampling]") {
  Row row;
  row.options.repetition_penalty = 2.0f;
  // Positive: 3 / 2 = 1.5 falls below id 1's 2.0.
  row.prompt = {0};
  CHECK(greedy({3.0f, 2.0f, 1.0f}, Row{}) == 0);
  CHECK(greedy({3.0f, 2.0f, 1.0f}, row) == 1);
  // Negative: -1 * 2 = -2 falls below id 1's -1.5 (dividing would have raised it to -0.5).
  CHECK(greedy({-1.0f, -1.5f, -3.0f}, row) == 1);
  // An id generated (not in the prompt) is penalised too.
  row.prompt = {2};
  row.output = {0};
  CHECK(greedy({3.0f, 2.0f, 1.0f}, row) == 1);
  // Each distinct id once, however often it occurs: 4 / 1.2 = 3.33 stays above 3 (twice would
  // give 2.78).
  row.options.repetition_penalty = 1.2f;
  row.prompt = {0, 0, 0};
  row.output = {0, 0};
  CHECK(greedy({4.0f, 3.0f}, row) == 0);
  row.options.repetition_penalty = 1.5f;  // 2.67 < 3
  CHECK(greedy({4.0f, 3.0f}, row) == 1);
  // Below 1 it encourages: -1 * 0.5 = -0.5 rises above id 1's -0.7.
  row.options.repetition_penalty = 0.5f;
  row.prompt = {0};
  row.output = {};
  CHECK(greedy({-1.0f, -0.7f}, row) == 0);
}

TEST_CASE("sampling: frequency and presence penalties count generated tokens only",
          "[kernels][sampling]") {
  Row row;
  row.output = {0, 0, 0};
  row.options.frequency_penalty = 0.4f;  // 5 - 3 * 0.4 = 3.8 < 4
  CHECK(greedy({5.0f, 4.0f, 0.0f}, row) == 1);
  row.options.frequency_penalty = 0.3f;  // 5 - 0.9 = 4.1 > 4
  CHECK(greedy({5.0f, 4.0f, 0.0f}, row) == 0);
  // The prompt is not counted.
  row.options.frequency_penalty = 2.0f;
  row.prompt = {0, 0, 0, 0, 0};
  row.output = {};
  CHECK(greedy({5.0f, 4.0f, 0.0f}, row) == 0);
  // Presence subtracts once, whatever the count: 5 - 0.6 = 4.4 < 4.5, 5 - 0.4 = 4.6 > 4.5.
  row = Row{};
  row.output = {0, 0, 0, 0};
  row.options.presence_penalty = 0.6f;
  CHECK(greedy({5.0f, 4.5f}, row) == 1);
  row.options.presence_penalty = 0.4f;
  CHECK(greedy({5.0f, 4.5f}, row) == 0);
  // Negative values encourage: 4.5 + 2 * 0.3 = 5.1 > 5.
  row = Row{};
  row.output = {1, 1};
  row.options.frequency_penalty = -0.3f;
  CHECK(greedy({5.0f, 4.5f}, row) == 1);
  // Both, on top of the repetition penalty: (6 / 1.25) - 2 * 0.25 - 0.25 = 4.05 > 4, and with
  // presence 0.1 more, 3.95 < 4.
  row = Row{};
  row.output = {0, 0};
  row.options.repetition_penalty = 1.25f;
  row.options.frequency_penalty = 0.25f;
  row.options.presence_penalty = 0.25f;
  CHECK(greedy({6.0f, 4.0f}, row) == 0);
  row.options.presence_penalty = 0.35f;
  CHECK(greedy({6.0f, 4.0f}, row) == 1);
}

TEST_CASE("sampling: top_k and min_p keep the most likely tokens, renormalised",
          "[kernels][sampling]") {
  Row row;
  row.options.temperature = 1.0f;
  check_frequencies(frequencies(kFour, row), {0.1, 0.2, 0.3, 0.4});
  row.options.top_k = 2;
  check_frequencies(frequencies(kFour, row), {0.0, 0.0, 3.0 / 7.0, 4.0 / 7.0});
  row.options.top_k = 1;
  check_frequencies(frequencies(kFour, row, 200), {0.0, 0.0, 0.0, 1.0});
  row.options.top_k = 5;  // more than the vocabulary: everything
  check_frequencies(frequencies(kFour, row), {0.1, 0.2, 0.3, 0.4});

  // min_p 0.6: the threshold 0.24 drops 0.1 and 0.2; 0.76 (0.304) keeps 0.4 only.
  row = Row{};
  row.options.temperature = 1.0f;
  row.options.min_p = 0.6f;
  check_frequencies(frequencies(kFour, row), {0.0, 0.0, 3.0 / 7.0, 4.0 / 7.0});
  row.options.min_p = 0.76f;
  check_frequencies(frequencies(kFour, row, 200), {0.0, 0.0, 0.0, 1.0});
  // min_p 0.45 (0.18) drops 0.1 only.
  row.options.min_p = 0.45f;
  check_frequencies(frequencies(kFour, row), {0.0, 2.0 / 9.0, 3.0 / 9.0, 4.0 / 9.0});
  // Either order, the same set: top_k 3 and min_p 0.6 keep {0.3, 0.4}.
  row.options.top_k = 3;
  row.options.min_p = 0.6f;
  check_frequencies(frequencies(kFour, row), {0.0, 0.0, 3.0 / 7.0, 4.0 / 7.0});

  // top_p over the kept tokens renormalised (vLLM's order): top_k 2 keeps {0.3, 0.4}, and
  // 0.4 / 0.7 = 0.57 alone reaches top_p 0.55 (0.4 of the whole vocabulary would not).
  row = Row{};
  row.options.temperature = 1.0f;
  row.options.top_k = 2;
  row.options.top_p = 0.55f;
  check_frequencies(frequencies(kFour, row, 200), {0.0, 0.0, 0.0, 1.0});
  row.options.top_p = 0.6f;  // 0.57 falls short: both
  check_frequencies(frequencies(kFour, row), {0.0, 0.0, 3.0 / 7.0, 4.0 / 7.0});

  // Ties at the k-th place go to the lower id: four equal logits, top_k 2 draws 0 and 1 only.
  row = Row{};
  row.options.temperature = 1.0f;
  row.options.top_k = 2;
  check_frequencies(frequencies(std::vector<float>(4, 0.5f), row), {0.5, 0.5, 0.0, 0.0});
}

TEST_CASE("sampling: the penalties apply before the temperature, greedy takes them",
          "[kernels][sampling]") {
  // The penalised logits are drawn from: id 0's 10 / 5 = 2 against id 1's log 2 + 2, so id 1
  // twice as likely as id 0, and id 2 (0) e^-2 as likely as id 0.
  const std::vector<float> logits = {10.0f, 2.0f + std::log(2.0f), 0.0f};
  Row row;
  row.options.temperature = 1.0f;
  row.options.repetition_penalty = 5.0f;
  row.prompt = {0};
  const double e2 = std::exp(-2.0);
  const double z = 1.0 + 2.0 + e2;
  check_frequencies(frequencies(logits, row), {1.0 / z, 2.0 / z, e2 / z});
  // Greedy among the penalised logits, whatever top_k / min_p / top_p say.
  row.options.top_k = 1;
  row.options.min_p = 0.9f;
  row.options.top_p = 0.1f;
  CHECK(greedy(logits, row) == 1);
}

TEST_CASE("sampling: a seed and a step draw the same token every time", "[kernels][sampling]") {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> value(-2.0f, 2.0f);
  std::vector<float> logits(500);
  for (float& x : logits) x = value(rng);
  Row row;
  row.options = {.temperature = 0.9f,
                 .top_p = 0.95f,
                 .top_k = 40,
                 .min_p = 0.02f,
                 .repetition_penalty = 1.1f,
                 .frequency_penalty = 0.3f,
                 .presence_penalty = 0.2f,
                 .seed = 1234};
  row.prompt = {1, 2, 3, 400};
  row.output = {7, 7, 9};
  std::set<int32_t> drawn;
  for (uint64_t step = 0; step < 40; ++step) {
    row.options.step = step;
    const int32_t first = draw(logits, row);
    CHECK(draw(logits, row) == first);
    drawn.insert(first);
  }
  CHECK(drawn.size() > 1);  // the steps draw different numbers
}

TEST_CASE("sampling: without the new fields the draw is the one of temperature and top_p only",
          "[kernels][sampling]") {
  std::mt19937 rng(8);
  std::uniform_real_distribution<float> value(-4.0f, 4.0f);
  std::vector<float> logits(3000);
  for (float& x : logits) x = value(rng);
  std::vector<std::byte> scratch(cpu::sampling_scratch_bytes(3000));
  Row row;
  row.prompt = {5, 6, 7};  // read by no step when the penalties are neutral
  row.output = {8};
  for (const float top_p : {0.3f, 0.9f, 1.0f}) {
    for (uint64_t step = 0; step < 30; ++step) {
      row.options.temperature = 0.8f;
      row.options.top_p = top_p;
      row.options.seed = 3;
      row.options.step = step;
      CHECK(draw(logits, row) ==
            cpu::sample_token(logits.data(), 3000, 0.8f, top_p, 3, step, scratch.data()));
    }
  }
}

TEST_CASE("sampling draws exactly what the documented procedure draws, every field at once",
          "[kernels][sampling]") {
  std::mt19937 rng(17);
  int num_compared = 0, num_different = 0;
  for (const int64_t vocab : {int64_t{7}, int64_t{300}, int64_t{3000}}) {
    for (const float spread : {0.5f, 6.0f}) {
      std::uniform_real_distribution<float> value(-spread, spread);
      std::vector<float> logits(vocab);
      for (float& x : logits) x = value(rng);
      for (int64_t i = 0; i + 3 < vocab; i += 5) logits[i + 3] = logits[i];  // ties
      std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(vocab - 1));
      for (int trial = 0; trial < 60; ++trial) {
        Row row;
        row.prompt.resize(trial % 13);
        row.output.resize(trial % 7);
        for (int32_t& t : row.prompt) t = id(rng);
        for (int32_t& t : row.output) t = rng() % 4 == 0 ? row.output[0] : id(rng);
        const float temperatures[] = {0.0f, 0.7f, 1.3f};
        const float top_ps[] = {0.3f, 0.9f, 1.0f};
        const int64_t top_ks[] = {0, 1, 5, 50, vocab + 3};
        const float min_ps[] = {0.0f, 0.05f, 0.3f};
        row.options.temperature = temperatures[trial % 3];
        row.options.top_p = top_ps[(trial / 3) % 3];
        row.options.top_k = top_ks[trial % 5];
        row.options.min_p = min_ps[(trial / 5) % 3];
        row.options.repetition_penalty = trial % 4 == 0 ? 1.0f : 0.8f + 0.1f * (trial % 6);
        row.options.frequency_penalty = trial % 3 == 0 ? 0.0f : -1.0f + 0.3f * (trial % 7);
        row.options.presence_penalty = trial % 5 == 0 ? 0.0f : 1.5f - 0.4f * (trial % 8);
        row.options.seed = static_cast<uint64_t>(trial) * 977;
        for (uint64_t step = 0; step < 5; ++step) {
          row.options.step = step;
          ++num_compared;
          num_different += draw(logits, row) != reference_sample(logits, row);
        }
      }
    }
  }
  CHECK(num_compared == 1800);
  CHECK(num_different == 0);
}

TEST_CASE("sampling: log-probabilities are the raw log-softmax, the top k most likely first",
          "[kernels][sampling]") {
  std::mt19937 rng(23);
  std::uniform_real_distribution<float> value(-8.0f, 8.0f);
  const int64_t vocab = 1000;
  std::vector<float> logits(vocab);
  for (float& x : logits) x = value(rng);
  // The log-softmax in double, straightforwardly.
  double sum = 0.0;
  for (float x : logits) sum += std::exp(static_cast<double>(x));
  std::vector<double> expected(vocab);
  for (int64_t i = 0; i < vocab; ++i) expected[i] = logits[i] - std::log(sum);
  std::vector<int32_t> by_expected(vocab);
  std::iota(by_expected.begin(), by_expected.end(), 0);
  std::sort(by_expected.begin(), by_expected.end(),
            [&](int32_t a, int32_t b) { return expected[a] > expected[b]; });

  std::vector<std::byte> scratch(cpu::sampling_scratch_bytes(vocab));
  const int64_t num_top = 20;
  std::vector<int32_t> top_ids(num_top, -1);
  std::vector<float> top_logprobs(num_top, std::numeric_limits<float>::quiet_NaN());
  for (const int32_t token : {by_expected[0], by_expected[500], int32_t{17}}) {
    float logprob = std::numeric_limits<float>::quiet_NaN();
    CHECK(cpu::token_logprobs(logits.data(), vocab, token, num_top, &logprob, top_ids.data(),
                              top_logprobs.data(), scratch.data()) == num_top);
    CHECK(logprob == Approx(expected[token]).epsilon(1e-6).margin(1e-6));
    for (int64_t i = 0; i < num_top; ++i) {
      CAPTURE(i);
      CHECK(top_ids[i] == by_expected[i]);
      CHECK(top_logprobs[i] == Approx(expected[by_expected[i]]).epsilon(1e-6).margin(1e-6));
    }
  }
  // The log-probabilities ignore the sampling: a penalised token keeps its raw value (they take
  // the logits the sampler was given, not what it made of them).
  Row row;
  row.options.repetition_penalty = 100.0f;
  row.prompt = {by_expected[0]};
  const int32_t drawn = draw(logits, row);
  CHECK(drawn == by_expected[1]);
  float logprob = 0.0f;
  cpu::token_logprobs(logits.data(), vocab, drawn, 0, &logprob, nullptr, nullptr, scratch.data());
  CHECK(logprob == Approx(expected[drawn]).epsilon(1e-6).margin(1e-6));
}

TEST_CASE("sampling: log-probabilities are clamped to [-9999, 0], ties go to the lower id",
          "[kernels][sampling]") {
  const float inf = std::numeric_limits<float>::infinity();
  // One certain token, one 1e5 below it, one masked, and two equal ones.
  const std::vector<float> logits = {-1e5f, 3.0f, -inf, -1e5f, -1e5f};
  std::vector<std::byte> scratch(cpu::sampling_scratch_bytes(5));
  std::vector<int32_t> top_ids(5, -1);
  std::vector<float> top_logprobs(5, 1.0f);
  float logprob = 1.0f;
  // Asking for more than the vocabulary gives the whole vocabulary.
  CHECK(cpu::token_logprobs(logits.data(), 5, 2, 9, &logprob, top_ids.data(), top_logprobs.data(),
                            scratch.data()) == 5);
  CHECK(logprob == cpu::kMinLogprob);
  CHECK(top_ids == std::vector<int32_t>{1, 0, 2, 3, 4});  // -9999 everywhere below id 1
  CHECK(top_logprobs[0] == 0.0f);
  for (int i = 1; i < 5; ++i) CHECK(top_logprobs[i] == cpu::kMinLogprob);
}
