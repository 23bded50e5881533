#include "eep/kernels/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace eep::kernels::cpu {
namespace {

// Tokens ordered first when looking for a nucleus of top_p < 1 (widened as needed).
constexpr int64_t kFirstSortedTokens = 256;

// Step 1 of the procedure: `logits` penalised into `out`. `marks` [vocab] is scratch.
void apply_penalties(const float* logits, int64_t vocab, const SamplingOptions& options, float* out,
                     int32_t* marks) {
  std::copy(logits, logits + vocab, out);
  std::fill(marks, marks + vocab, 0);
  const float r = options.repetition_penalty;
  if (r != 1.0f) {
    // Every distinct id once: marks[id] is 1 once it was penalised.
    auto penalise = [&](const int32_t* ids, int64_t num_ids) {
      for (int64_t i = 0; i < num_ids; ++i) {
        const int32_t id = ids[i];
        if (marks[id] != 0) continue;
        marks[id] = 1;
        out[id] = out[id] > 0.0f ? out[id] / r : out[id] * r;
      }
    };
    penalise(options.prompt_ids, options.num_prompt_ids);
    penalise(options.output_ids, options.num_output_ids);
    for (int64_t i = 0; i < options.num_prompt_ids; ++i) marks[options.prompt_ids[i]] = 0;
    for (int64_t i = 0; i < options.num_output_ids; ++i) marks[options.output_ids[i]] = 0;
  }
  if (options.frequency_penalty != 0.0f || options.presence_penalty != 0.0f) {
    // marks[id] = the id's count in the output, reset to 0 once the id is penalised.
    for (int64_t i = 0; i < options.num_output_ids; ++i) ++marks[options.output_ids[i]];
    for (int64_t i = 0; i < options.num_output_ids; ++i) {
      const int32_t id = options.output_ids[i];
      if (marks[id] == 0) continue;
      out[id] = out[id] - options.frequency_penalty * static_cast<float>(marks[id]);
      out[id] = out[id] - options.presence_penalty;
      marks[id] = 0;
    }
  }
}

}  // namespace

bool has_penalties(const SamplingOptions& options) {
  return options.repetition_penalty != 1.0f || options.frequency_penalty != 0.0f ||
         options.presence_penalty != 0.0f;
}

double sampling_uniform(uint64_t seed, uint64_t step) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (step + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z = z ^ (z >> 31);
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

int64_t sampling_scratch_bytes(int64_t vocab) {
  return vocab * static_cast<int64_t>(2 * sizeof(float) + 2 * sizeof(int32_t));
}

int32_t sample_token(const float* logits, int64_t vocab, float temperature, float top_p,
                     uint64_t seed, uint64_t step, void* scratch) {
  SamplingOptions options;
  options.temperature = temperature;
  options.top_p = top_p;
  options.seed = seed;
  options.step = step;
  return sample_token(logits, vocab, options, scratch);
}

int32_t sample_token(const float* logits, int64_t vocab, const SamplingOptions& options,
                     void* scratch) {
  float* penalised = static_cast<float*>(scratch);
  float* probs = penalised + vocab;
  int32_t* order = reinterpret_cast<int32_t*>(probs + vocab);
  int32_t* marks = order + vocab;
  if (has_penalties(options)) {
    apply_penalties(logits, vocab, options, penalised, marks);
    logits = penalised;
  }
  // Greedy: the first maximum.
  const int32_t argmax = static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  const float temperature = options.temperature;
  if (temperature <= 0.0f) return argmax;
  const float max_logit = logits[argmax];
  double sum = 0.0;
  for (int64_t i = 0; i < vocab; ++i) {
    probs[i] = std::exp((logits[i] - max_logit) / temperature);
    sum += probs[i];
  }
  for (int64_t i = 0; i < vocab; ++i) probs[i] = static_cast<float>(probs[i] / sum);
  std::iota(order, order + vocab, 0);
  auto ranks_before = [&](int32_t a, int32_t b) {
    return probs[a] > probs[b] || (probs[a] == probs[b] && a < b);
  };

  // The kept ids (min_p, top_k): the first num_kept of the order, with their mass K.
  int64_t num_kept = vocab;
  double kept_mass = 1.0;
  const bool limits_k = options.top_k > 0 && options.top_k < vocab;
  if (options.min_p > 0.0f || limits_k) {
    if (options.min_p > 0.0f) {
      const float threshold = options.min_p * probs[argmax];
      num_kept = std::count_if(probs, probs + vocab, [&](float p) { return p >= threshold; });
    }
    if (limits_k) num_kept = std::min(num_kept, options.top_k);
    num_kept = std::max<int64_t>(num_kept, 1);
    // The last kept id; an id is kept when it ranks before it (or is it).
    std::nth_element(order, order + num_kept - 1, order + vocab, ranks_before);
    const int32_t last = order[num_kept - 1];
    kept_mass = 0.0;
    for (int32_t i = 0; i < vocab; ++i) {
      if (!ranks_before(last, i)) kept_mass += probs[i];
    }
  }
  const double nucleus_mass = static_cast<double>(options.top_p) * kept_mass;

  // The nucleus: the shortest prefix of the kept ids whose mass reaches top_p * K (at least one
  // id). Only a prefix of the order matters, so sort the most probable few first and widen only
  // while their mass falls short: same result as sorting everything.
  int64_t num_sorted =
      options.top_p < 1.0f ? std::min<int64_t>(num_kept, kFirstSortedTokens) : num_kept;
  int64_t nucleus = 0;
  double mass = 0.0;
  for (;;) {
    if (num_sorted < vocab) {
      std::nth_element(order, order + num_sorted, order + vocab, ranks_before);
    }
    std::sort(order, order + num_sorted, ranks_before);
    nucleus = 0;
    mass = 0.0;
    while (nucleus < num_sorted && (nucleus == 0 || mass < nucleus_mass)) {
      mass += probs[order[nucleus++]];
    }
    if (mass >= nucleus_mass || num_sorted == num_kept) break;
    num_sorted = std::min(num_kept, num_sorted * 16);
  }
  const double target = sampling_uniform(options.seed, options.step) * mass;
  double cumulative = 0.0;
  for (int64_t i = 0; i < nucleus; ++i) {
    cumulative += probs[order[i]];
    if (target < cumulative) return order[i];
  }
  return order[nucleus - 1];
}

int64_t token_logprobs(const float* logits, int64_t vocab, int32_t token, int64_t num_top,
                       float* logprob, int32_t* top_ids, float* top_logprobs, void* scratch) {
  float* values = static_cast<float*>(scratch);
  int32_t* order = reinterpret_cast<int32_t*>(values + vocab);
  const double max_logit = *std::max_element(logits, logits + vocab);
  double sum = 0.0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - max_logit);
  const double lse = max_logit + std::log(sum);
  for (int64_t i = 0; i < vocab; ++i) {
    const float value = static_cast<float>(static_cast<double>(logits[i]) - lse);
    // Written so that NaN fails the first test and becomes the floor too.
    values[i] = value >= kMinLogprob ? std::min(value, 0.0f) : kMinLogprob;
  }
  *logprob = values[token];
  const int64_t num = std::clamp<int64_t>(num_top, 0, vocab);
  if (num == 0) return 0;
  std::iota(order, order + vocab, 0);
  auto ranks_before = [&](int32_t a, int32_t b) {
    return values[a] > values[b] || (values[a] == values[b] && a < b);
  };
  if (num < vocab) std::nth_element(order, order + num, order + vocab, ranks_before);
  std::sort(order, order + num, ranks_before);
  for (int64_t i = 0; i < num; ++i) {
    top_ids[i] = order[i];
    top_logprobs[i] = values[order[i]];
  }
  return num;
}

}  // namespace eep::kernels::cpu
