// The engine's side of sampling (kernels/sampling.h states the procedure): a request's sampling
// parameters checked when it arrives, the SamplingSpec of its next token, and the host sampler
// of one row that the CPU backend uses for every row and the CUDA backend for the rows its device
// sampler cannot draw (SamplingSpec::needs_host_sampler). Engine thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "eep/common/protocol.h"
#include "eep/common/status.h"
#include "eep/worker/engine/backend.h"
#include "eep/worker/engine/scheduler.h"

namespace eep::worker {

// OpenAI's (and vLLM's) range of the frequency and presence penalties.
inline constexpr float kMaxAbsPenalty = 2.0f;

// kInvalidArgument naming the field when `params` holds a value the sampler cannot use: top_k
// below 0, min_p outside [0, 1], a frequency or presence penalty outside [-2, 2], a repetition
// penalty not above 0 (or not finite), logprobs below -1.
Status check_sampling_params(const protocol::SamplingParams& params);

// The spec of `request`'s next token; it views the request's prompt and output, so it is valid
// while the request is unchanged.
SamplingSpec sampling_spec(const EngineRequest& request);

// One row of logits [vocab] on the host: the token, and its log-probabilities into *logprobs when
// spec.num_logprobs >= 0 (else *logprobs is reset). `scratch` grows as needed and is kept by the
// caller between rows.
int32_t sample_on_host(const float* logits, int64_t vocab, const SamplingSpec& spec,
                       std::vector<std::byte>& scratch,
                       std::optional<protocol::TokenLogprobs>* logprobs);

}  // namespace eep::worker
