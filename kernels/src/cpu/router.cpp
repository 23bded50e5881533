#include "eep/kernels/router.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <vector>

namespace eep::kernels::cpu {

void router_topk(const float* logits, int64_t num_tokens, int64_t num_experts, int64_t k,
                 bool norm_topk_prob, int32_t* topk_ids, float* topk_weights) {
  assert(k >= 1 && k <= num_experts);
  std::vector<float> probs(num_experts);
  std::vector<int32_t> order(num_experts);
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float* row = logits + t * num_experts;
    const float max_logit = *std::max_element(row, row + num_experts);
    float sum = 0.0f;
    for (int64_t e = 0; e < num_experts; ++e) {
      probs[e] = std::exp(row[e] - max_logit);
      sum += probs[e];
    }
    for (int64_t e = 0; e < num_experts; ++e) probs[e] /= sum;
    for (int64_t e = 0; e < num_experts; ++e) order[e] = static_cast<int32_t>(e);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
      return probs[a] > probs[b] || (probs[a] == probs[b] && a < b);
    });
    float selected = 0.0f;
    for (int64_t j = 0; j < k; ++j) selected += probs[order[j]];
    for (int64_t j = 0; j < k; ++j) {
      topk_ids[t * k + j] = order[j];
      topk_weights[t * k + j] = norm_topk_prob ? probs[order[j]] / selected : probs[order[j]];
    }
  }
}

}  // namespace eep::kernels::cpu
