#include "eep/kernels/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace eep::kernels::cpu {

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
  std::sort(order, order + vocab, [&](int32_t a, int32_t b) {
    return probs[a] > probs[b] || (probs[a] == probs[b] && a < b);
  });
  // The nucleus: the shortest prefix whose mass reaches top_p (at least one token).
  int64_t nucleus = 0;
  double mass = 0.0;
  while (nucleus < vocab && (nucleus == 0 || mass < top_p)) mass += probs[order[nucleus++]];
  const double target = sampling_uniform(seed, step) * mass;
  double cumulative = 0.0;
  for (int64_t i = 0; i < nucleus; ++i) {
    cumulative += probs[order[i]];
    if (target < cumulative) return order[i];
  }
  return order[nucleus - 1];
}

}  // namespace eep::kernels::cpu
