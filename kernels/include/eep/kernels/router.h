// The MoE router of Qwen3-MoE: softmax over all experts in fp32, the k largest probabilities
// (ties broken towards the lower expert index, so the choice is deterministic), renormalised to
// sum to 1 when norm_topk_prob.
#pragma once

#include <cstdint>

namespace eep::kernels::cpu {

// logits [num_tokens, num_experts] -> topk_ids [num_tokens, k] (descending probability) and
// topk_weights [num_tokens, k].
void router_topk(const float* logits, int64_t num_tokens, int64_t num_experts, int64_t k,
                 bool norm_topk_prob, int32_t* topk_ids, float* topk_weights);

}  // namespace eep::kernels::cpu
