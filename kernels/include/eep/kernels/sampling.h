// Token sampling from one row of logits [vocab], fp32. The exact procedure (a CUDA version must
// follow it to draw the same tokens):
//   temperature <= 0: greedy, the lowest id among the maximal logits.
//   otherwise, with m = max logit: e[i] = expf((logits[i] - m) / temperature) (fp32);
//     s = sum of e[i] in double in id order; p[i] = (float)(e[i] / s);
//     order the ids by p descending, ties by lower id;
//     the nucleus is the shortest prefix of that order (at least one id) whose mass, summed in
//     double along the order, is >= top_p (the whole vocabulary if it never gets there);
//     target = u * mass (double); the token is the first id of the nucleus at which the double
//     running sum of p exceeds target (the last id of the nucleus if none does).
//   u in [0, 1) is a pure function of (seed, step):
//     z = seed + 0x9E3779B97F4A7C15 * (step + 1)            (uint64, wrapping)
//     z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
//     z = z ^ (z >> 31);  u = (z >> 11) * 2^-53             (splitmix64's (step + 1)-th output)
// `step` is the number of tokens the sequence has generated before this one, so a sequence that
// is resubmitted elsewhere (migration after a scale) draws the same numbers.
#pragma once

#include <cstdint>

namespace eep::kernels::cpu {

double sampling_uniform(uint64_t seed, uint64_t step);

// Index of the sampled token in [0, vocab). `scratch` holds 2 * vocab floats-worth: vocab floats
// and vocab int32 indices (pass sampling_scratch_bytes(vocab) bytes).
int32_t sample_token(const float* logits, int64_t vocab, float temperature, float top_p,
                     uint64_t seed, uint64_t step, void* scratch);
int64_t sampling_scratch_bytes(int64_t vocab);

}  // namespace eep::kernels::cpu
