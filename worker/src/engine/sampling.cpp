#include "eep/worker/engine/sampling.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "eep/kernels/sampling.h"

namespace eep::worker {

Status check_sampling_params(const protocol::SamplingParams& params) {
  auto refuse = [](const std::string& field, auto value, const std::string& range) {
    return error(ErrorCode::kInvalidArgument,
                 "sampling parameter " + field + " = " + std::to_string(value) + ": " + range);
  };
  if (params.top_k < 0) return refuse("top_k", params.top_k, "must be 0 (off) or more");
  if (!(params.min_p >= 0.0f && params.min_p <= 1.0f)) {
    return refuse("min_p", params.min_p, "must be in [0, 1]");
  }
  if (!(std::fabs(params.frequency_penalty) <= kMaxAbsPenalty)) {
    return refuse("frequency_penalty", params.frequency_penalty, "must be in [-2, 2]");
  }
  if (!(std::fabs(params.presence_penalty) <= kMaxAbsPenalty)) {
    return refuse("presence_penalty", params.presence_penalty, "must be in [-2, 2]");
  }
  if (!(params.repetition_penalty > 0.0f && std::isfinite(params.repetition_penalty))) {
    return refuse("repetition_penalty", params.repetition_penalty,
                  "must be above 0 and finite (1: off)");
  }
  if (params.logprobs < -1) {
    return refuse("logprobs", params.logprobs, "must be -1 (none) or a count of 0 or more");
  }
  return Status::ok();
}

SamplingSpec sampling_spec(const EngineRequest& request) {
  const protocol::SamplingParams& params = request.params;
  SamplingSpec spec;
  spec.temperature = params.temperature;
  spec.top_p = params.top_p;
  spec.seed = params.seed;
  spec.step = request.output.size();
  spec.top_k = params.top_k;
  spec.min_p = params.min_p;
  spec.repetition_penalty = params.repetition_penalty;
  spec.frequency_penalty = params.frequency_penalty;
  spec.presence_penalty = params.presence_penalty;
  spec.num_logprobs = params.logprobs;
  spec.prompt_ids = request.prompt;
  spec.output_ids = request.output;
  return spec;
}

int32_t sample_on_host(const float* logits, int64_t vocab, const SamplingSpec& spec,
                       std::vector<std::byte>& scratch,
                       std::optional<protocol::TokenLogprobs>* logprobs) {
  const auto scratch_bytes = static_cast<size_t>(kernels::cpu::sampling_scratch_bytes(vocab));
  if (scratch.size() < scratch_bytes) scratch.resize(scratch_bytes);
  kernels::cpu::SamplingOptions options;
  options.temperature = spec.temperature;
  options.top_p = spec.top_p;
  options.top_k = spec.top_k;
  options.min_p = spec.min_p;
  options.repetition_penalty = spec.repetition_penalty;
  options.frequency_penalty = spec.frequency_penalty;
  options.presence_penalty = spec.presence_penalty;
  options.seed = spec.seed;
  options.step = spec.step;
  options.prompt_ids = spec.prompt_ids.data();
  options.num_prompt_ids = static_cast<int64_t>(spec.prompt_ids.size());
  options.output_ids = spec.output_ids.data();
  options.num_output_ids = static_cast<int64_t>(spec.output_ids.size());
  const int32_t token = kernels::cpu::sample_token(logits, vocab, options, scratch.data());
  logprobs->reset();
  if (spec.num_logprobs >= 0) {
    protocol::TokenLogprobs& out = logprobs->emplace();
    const int64_t num_top = std::min<int64_t>(spec.num_logprobs, vocab);
    out.top_ids.resize(num_top);
    out.top_logprobs.resize(num_top);
    kernels::cpu::token_logprobs(logits, vocab, token, num_top, &out.logprob, out.top_ids.data(),
                                 out.top_logprobs.data(), scratch.data());
  }
  return token;
}

}  // namespace eep::worker
