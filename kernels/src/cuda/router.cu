#include "eep/kernels/cuda/router.h"

namespace eep::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kPerLane = static_cast<int>(kRouterMaxExperts / 32);

// Larger probability first, then the lower expert index (the CPU's partial_sort order).
__device__ __forceinline__ bool ranks_before(float p, int e, float other_p, int other_e) {
  return p > other_p || (p == other_p && e < other_e);
}

// One warp per token; lane holds experts lane, lane + 32, ... in registers. The k winners are
// taken one at a time by a warp-wide arg-max, lane j keeping the j-th.
__global__ void __launch_bounds__(kThreads)
    router_topk_kernel(const float* __restrict__ logits, int64_t num_tokens, int num_experts, int k,
                       bool norm_topk_prob, const int32_t* __restrict__ num_valid,
                       int32_t* __restrict__ topk_ids, float* __restrict__ topk_weights) {
  const int lane = threadIdx.x % 32;
  const int64_t token = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (token >= num_tokens) return;
  int32_t* ids = topk_ids + token * k;
  float* weights = topk_weights + token * k;
  if (num_valid != nullptr && token >= *num_valid) {
    for (int j = lane; j < k; j += 32) {
      ids[j] = -1;
      weights[j] = 0.0f;
    }
    return;
  }
  const float* row = logits + token * num_experts;
  float prob[kPerLane];
  float max_logit = -INFINITY;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int e = lane + 32 * i;
    prob[i] = e < num_experts ? row[e] : -INFINITY;
    max_logit = fmaxf(max_logit, prob[i]);
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    max_logit = fmaxf(max_logit, __shfl_xor_sync(0xffffffffu, max_logit, offset));
  }
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int e = lane + 32 * i;
    prob[i] = e < num_experts ? expf(prob[i] - max_logit) : 0.0f;
    sum += prob[i];
  }
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    // Probabilities are >= 0; -1 marks experts that do not exist or were already taken.
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    prob[i] = lane + 32 * i < num_experts ? prob[i] / sum : -1.0f;
  }
  int my_id = -1;
  float my_prob = 0.0f;
  for (int j = 0; j < k; ++j) {
    float best_p = -1.0f;
    int best_e = 0x7fffffff;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      if (ranks_before(prob[i], lane + 32 * i, best_p, best_e)) {
        best_p = prob[i];
        best_e = lane + 32 * i;
      }
    }
    for (int offset = 16; offset > 0; offset /= 2) {
      const float other_p = __shfl_xor_sync(0xffffffffu, best_p, offset);
      const int other_e = __shfl_xor_sync(0xffffffffu, best_e, offset);
      if (ranks_before(other_p, other_e, best_p, best_e)) {
        best_p = other_p;
        best_e = other_e;
      }
    }
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      if (lane + 32 * i == best_e) prob[i] = -1.0f;
    }
    if (lane == j) {
      my_id = best_e;
      my_prob = best_p;
    }
  }
  // The CPU's order of the selected sum: j = 0, 1, ..., k - 1.
  float selected = 0.0f;
  for (int j = 0; j < k; ++j) selected += __shfl_sync(0xffffffffu, my_prob, j);
  if (lane < k) {
    ids[lane] = my_id;
    weights[lane] = norm_topk_prob ? my_prob / selected : my_prob;
  }
}

}  // namespace

cudaError_t router_topk(const float* logits, int64_t num_tokens, int64_t num_experts, int64_t k,
                        bool norm_topk_prob, const int32_t* num_valid, int32_t* topk_ids,
                        float* topk_weights, cudaStream_t stream) {
  if (num_tokens < 0 || num_experts < 1 || num_experts > kRouterMaxExperts || k < 1 ||
      k > kRouterMaxTopK || k > num_experts) {
    return cudaErrorInvalidValue;
  }
  if (num_tokens == 0) return cudaSuccess;
  const int64_t grid = (num_tokens + kWarps - 1) / kWarps;
  if (grid > 0x7fffffff) return cudaErrorInvalidValue;
  router_topk_kernel<<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(
      logits, num_tokens, static_cast<int>(num_experts), static_cast<int>(k), norm_topk_prob,
      num_valid, topk_ids, topk_weights);
  return cudaGetLastError();
}

}  // namespace eep::kernels::cuda
