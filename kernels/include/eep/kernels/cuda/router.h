// The MoE router on the device: contract of kernels::cpu::router_topk (softmax in fp32, the k
// largest probabilities in descending order with ties to the lower expert index, renormalised
// when norm_topk_prob), for up to 512 experts and k up to 16.
#pragma once

#include <cstdint>

#include "eep/kernels/cuda/types.h"

namespace eep::kernels::cuda {

inline constexpr int64_t kRouterMaxExperts = 512;
inline constexpr int64_t kRouterMaxTopK = 16;

// logits [num_tokens, num_experts] fp32 -> topk_ids [num_tokens, k], topk_weights
// [num_tokens, k]. num_valid: device scalar or nullptr (all rows valid); rows >= *num_valid
// (padding of a captured batch) get ids -1 and weights 0.
cudaError_t router_topk(const float* logits, int64_t num_tokens, int64_t num_experts, int64_t k,
                        bool norm_topk_prob, const int32_t* num_valid, int32_t* topk_ids,
                        float* topk_weights, cudaStream_t stream);

}  // namespace eep::kernels::cuda
