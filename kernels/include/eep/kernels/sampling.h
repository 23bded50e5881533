// Token sampling from one row of logits. Greedy when temperature == 0; otherwise softmax of
// logits / temperature, restricted to the nucleus (the most probable tokens, by probability then
// by lower id, whose cumulative probability first reaches top_p), and a draw with a uniform
// number u in [0, 1) that is a pure function of (seed, step):
//   z = seed + 0x9E3779B97F4A7C15 * (step + 1)            (uint64, wrapping)
//   z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
//   z = z ^ (z >> 31);  u = (z >> 11) * 2^-53             (splitmix64)
// `step` is the number of tokens the sequence has generated before this one, so a sequence that
// is resubmitted elsewhere (migration after a scale) draws the same numbers. A CUDA version must
// compute u identically.
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
