#include "eep/coordinator/output_check.h"

#include <array>
#include <string>
#include <string_view>

#include "eep/common/text.h"

namespace eep::coordinator {
namespace {

constexpr std::array<std::string_view, 4> kFinishReasons = {"length", "stop", "cancelled", "error"};
constexpr size_t kMaxErrorBytes = 4096;

}  // namespace

Status check_output(const protocol::RequestOutput& output, const OutputLimits& limits) {
  auto refuse = [&](const std::string& what) {
    return error(ErrorCode::kInternal,
                 "invalid output for request " + std::to_string(output.request_id) + ": " + what);
  };
  if (limits.vocab_size) {
    for (int32_t id : output.new_tokens) {
      if (id < 0 || id >= *limits.vocab_size) {
        return refuse("token id " + std::to_string(id) + " outside the vocabulary of " +
                      std::to_string(*limits.vocab_size));
      }
    }
  }
  if (limits.num_tokens_so_far + output.new_tokens.size() >
      static_cast<size_t>(limits.max_tokens)) {
    return refuse(std::to_string(limits.num_tokens_so_far + output.new_tokens.size()) +
                  " tokens, max_tokens is " + std::to_string(limits.max_tokens));
  }
  if (output.finished) {
    bool known = false;
    for (std::string_view reason : kFinishReasons) known = known || output.finish_reason == reason;
    if (!known) return refuse("finish_reason '" + printable(output.finish_reason) + "'");
  } else if (!output.finish_reason.empty() || !output.error.empty()) {
    return refuse("a finish_reason or error on an output that does not finish");
  }
  if (limits.logprobs < 0 && !output.logprobs.empty()) {
    return refuse("log-probabilities that were not asked for");
  }
  if (limits.logprobs >= 0 && output.logprobs.size() != output.new_tokens.size()) {
    return refuse(std::to_string(output.logprobs.size()) + " log-probabilities for " +
                  std::to_string(output.new_tokens.size()) + " tokens");
  }
  auto valid_logprob = [](float value) { return value <= 0.0f; };  // false for NaN too
  for (const protocol::TokenLogprobs& entry : output.logprobs) {
    if (!valid_logprob(entry.logprob)) return refuse("a log-probability above 0 or NaN");
    if (entry.top_ids.size() != entry.top_logprobs.size() ||
        entry.top_ids.size() > static_cast<size_t>(limits.logprobs)) {
      return refuse("top log-probabilities of the wrong size");
    }
    for (size_t idx = 0; idx < entry.top_ids.size(); ++idx) {
      const int32_t id = entry.top_ids[idx];
      if (id < 0 || (limits.vocab_size && id >= *limits.vocab_size)) {
        return refuse("top token id " + std::to_string(id) + " outside the vocabulary");
      }
      if (!valid_logprob(entry.top_logprobs[idx])) {
        return refuse("a top log-probability above 0 or NaN");
      }
    }
  }
  if (output.error.size() > kMaxErrorBytes) {
    return refuse("an error message of " + std::to_string(output.error.size()) + " bytes");
  }
  return Status::ok();
}

}  // namespace eep::coordinator
