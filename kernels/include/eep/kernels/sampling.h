// Token sampling from one row of logits [vocab], fp32. The exact procedure (a CUDA version must
// follow it to draw the same tokens). The steps in order, each skipped when its field has its
// neutral value (repetition_penalty 1, frequency/presence_penalty 0, top_k 0, min_p 0), so a row
// without them draws exactly what it drew before they existed:
//   1. Penalties, on a copy y of the logits (fp32 arithmetic; vLLM's apply_penalties):
//      repetition_penalty r (transformers'): for every distinct id in prompt + output,
//        y = y > 0 ? y / r : y * r;
//      then OpenAI's frequency f and presence q, over the output ids only: for every id that
//        occurs c > 0 times in the output, y = y - f * (float)c, then y = y - q (two roundings,
//        as vLLM's two in-place subtractions).
//   2. temperature <= 0: greedy, the lowest id among the maximal y (top_k, min_p, top_p unused).
//   3. otherwise, with m = max y: e[i] = expf((y[i] - m) / temperature) (fp32);
//      s = sum of e[i] in double in id order; p[i] = (float)(e[i] / s);
//      order the ids by p descending, ties by lower id.
//   4. The kept ids, a prefix of that order: min_p drops every id with p < min_p * p_max (fp32
//      product; p_max is p of the greedy id), top_k keeps the first top_k of the order (ties
//      therefore by lower id; vLLM keeps every id tied with the k-th). vLLM applies min_p first
//      (sampler.py: temperature, min_p, then top_k/top_p); both keep a prefix of the same order
//      and p_max is the same either way, so the kept set does not depend on their order.
//      K = the kept ids' sum of p in double in id order, or exactly 1 when neither can drop an
//      id (min_p 0, top_k 0 or >= vocab: the whole vocabulary, as before they existed).
//   5. The nucleus (top_p over the kept ids, renormalised: mass / K >= top_p): the shortest
//      prefix of the kept ids (at least one) whose mass, summed in double along the order, is
//      >= top_p * K (double) (all the kept ids if it never gets there).
//   6. target = u * mass (double), mass being the nucleus's; the token is the first id of the
//      nucleus at which the double running sum of p exceeds target (the last id of the nucleus
//      if none does).
//   u in [0, 1) is a pure function of (seed, step):
//     z = seed + 0x9E3779B97F4A7C15 * (step + 1)            (uint64, wrapping)
//     z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
//     z = z ^ (z >> 31);  u = (z >> 11) * 2^-53             (splitmix64's (step + 1)-th output)
// `step` is the number of tokens the sequence has generated before this one, so a sequence that
// is resubmitted elsewhere (migration after a scale) draws the same numbers, and its output so
// far (resubmitted with it) gives the same penalties.
//
// Log-probabilities (token_logprobs) follow vLLM's default logprobs_mode "raw_logprobs": the
// log-softmax of the model's logits before penalties and temperature: with m = max logit,
// lse = m + log(sum over ids in id order of exp((double)logit - m)) (double),
// logprob[i] = (float)((double)logit[i] - lse), clamped to [-9999, 0] (JSON has no -inf; a NaN
// becomes -9999 too). The top k are ordered by that float logprob descending, ties by lower id.
#pragma once

#include <cstdint>

namespace eep::kernels::cpu {

// One row's sampling: the request's parameters (protocol SamplingParams' fields) and what the
// penalties read. The id arrays are the sequence's prompt and the tokens it generated so far,
// every id in [0, vocab); they are read only when a penalty is set.
struct SamplingOptions {
  float temperature = 0.0f;  // <= 0: greedy
  float top_p = 1.0f;
  int64_t top_k = 0;  // 0 (or >= vocab): every id
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;  // > 0
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  uint64_t seed = 0;
  uint64_t step = 0;  // tokens the sequence generated before this one
  const int32_t* prompt_ids = nullptr;
  int64_t num_prompt_ids = 0;
  const int32_t* output_ids = nullptr;
  int64_t num_output_ids = 0;
};

// Whether step 1 changes anything for these options.
bool has_penalties(const SamplingOptions& options);

double sampling_uniform(uint64_t seed, uint64_t step);

// Index of the sampled token in [0, vocab). `scratch` holds sampling_scratch_bytes(vocab) bytes
// (4 * vocab floats-worth: the penalised logits, probabilities, order and counts).
int32_t sample_token(const float* logits, int64_t vocab, const SamplingOptions& options,
                     void* scratch);
// The same with temperature, top_p, seed and step only.
int32_t sample_token(const float* logits, int64_t vocab, float temperature, float top_p,
                     uint64_t seed, uint64_t step, void* scratch);
int64_t sampling_scratch_bytes(int64_t vocab);

// The raw log-probabilities (see above) of one row: *logprob = token's, and the top
// min(num_top, vocab) ids and log-probabilities, most likely first, into top_ids and
// top_logprobs. Returns how many top entries it wrote. `scratch` as sample_token's.
int64_t token_logprobs(const float* logits, int64_t vocab, int32_t token, int64_t num_top,
                       float* logprob, int32_t* top_ids, float* top_logprobs, void* scratch);

// The clamp of the log-probabilities: JSON has no -inf, and rounding must not give a value above 0.
inline constexpr float kMinLogprob = -9999.0f;

}  // namespace eep::kernels::cpu
