#include "eep/kernels/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace eep::kernels::cpu {
namespace {

// Tokens ordered first when looking for a nucleus of top_p < 1 (widened as needed).
constexpr int64_t kFirstSortedTokens = 256;

}  // namespace

double sampling_uniform(uint64_t seed, uint64_t step) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (step + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z = z ^ (z >> 31);
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

int64_t sampling_scratch_bytes(int64_t vocab) {
  return vocab * static_cast<int64_t>(sizeof(float) + sizeof(int32_t));
}

int32_t sample_token(const float* logits, int64_t vocab, float temperature, float top_p,
                     uint64_t seed, uint64_t step, void* scratch) {
  // Greedy: the first maximum.
  const int32_t argmax = static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  if (temperature <= 0.0f) return argmax;
  float* probs = static_cast<float*>(scratch);
  int32_t* order = reinterpret_cast<int32_t*>(probs + vocab);
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
  // The nucleus: the shortest prefix of the tokens by (probability, lower id) whose mass reaches
  // top_p (at least one token). Only a prefix of the order matters, so sort the most probable
  // few first and widen only while their mass falls short: same result as sorting everything.
  int64_t num_sorted = top_p < 1.0f ? std::min<int64_t>(vocab, kFirstSortedTokens) : vocab;
  int64_t nucleus = 0;
  double mass = 0.0;
  for (;;) {
    if (num_sorted < vocab) {
      std::nth_element(order, order + num_sorted, order + vocab, ranks_before);
    }
    std::sort(order, order + num_sorted, ranks_before);
    nucleus = 0;
    mass = 0.0;
    while (nucleus < num_sorted && (nucleus == 0 || mass < top_p)) {
      mass += probs[order[nucleus++]];
    }
    if (mass >= top_p || num_sorted == vocab) break;
    num_sorted = std::min(vocab, num_sorted * 16);
  }
  const double target = sampling_uniform(seed, step) * mass;
  double cumulative = 0.0;
  for (int64_t i = 0; i < nucleus; ++i) {
    cumulative += probs[order[i]];
    if (target < cumulative) return order[i];
  }
  return order[nucleus - 1];
}

}  // namespace eep::kernels::cpu
