// The contract between the HTTP API (http_api.cpp, Boost.Beast threads) and the coordinator's
// serving core (the event loop: router, workers). The HTTP side validates and tokenizes, then
// hands a CompletionRequest to a ServingFrontend; the core streams CompletionEvents back through
// the request's callback. Everything here may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "eep/common/protocol.h"
#include "eep/common/status.h"

namespace eep::coordinator {
namespace text {
class HfTokenizer;
}
namespace jinja {
class ChatTemplate;
}

struct CompletionRequest {
  uint64_t id = 0;  // assigned by the frontend in submit()
  std::vector<int32_t> prompt_ids;
  int max_tokens = 16;
  float temperature = 1.0f;  // OpenAI default; 0 = greedy
  float top_p = 1.0f;
  std::optional<uint64_t> seed;  // none: the frontend picks one (reported back in the event)
  bool ignore_eos = false;
  std::vector<int32_t> stop_token_ids;
  // The rest of the worker's sampling (protocol::SamplingParams has their meaning).
  int top_k = 0;
  float min_p = 0.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  float repetition_penalty = 1.0f;
  int logprobs = -1;  // -1: none; k >= 0: each token's log-probability and the top k
};

// One step's news about a request. Tokens arrive in order; exactly one event has finished=true
// (also on failure: then status is the error and finish_reason "error").
struct CompletionEvent {
  uint64_t request_id = 0;
  std::vector<int32_t> new_tokens;
  bool finished = false;
  std::string finish_reason;  // "length", "stop", "error", "cancelled" when finished
  Status status;              // not ok only when finish_reason == "error"
  int prompt_tokens = 0;
  int completion_tokens = 0;                      // generated so far, new_tokens included
  std::vector<protocol::TokenLogprobs> logprobs;  // one per new token when asked for
};

using CompletionCallback = std::function<void(const CompletionEvent&)>;

struct ModelInfo {
  std::string name;  // the id /v1/models lists and requests must name
  int vocab_size = 0;
  int max_model_len = 0;       // prompt + max_tokens must fit
  bool byte_tokenizer = true;  // text prompts are bytes (generated models); false: ids only
  int64_t created = 0;         // unix seconds, for /v1/models
  // The checkpoint's own tokenizer and chat template (model_text.h), shared and immutable; null
  // when it has none (then byte_tokenizer says whether text goes through the byte tokenizer).
  std::shared_ptr<const text::HfTokenizer> tokenizer;
  std::shared_ptr<const jinja::ChatTemplate> chat_template;
};

// A snapshot for /metrics and the periodic throughput log line.
struct ServingStats {
  int64_t requests_running = 0;
  int64_t requests_waiting = 0;
  int64_t requests_finished = 0;
  int64_t requests_failed = 0;
  int64_t prompt_tokens = 0;
  int64_t generation_tokens = 0;
  int fleet_size = 0;  // ACTIVE workers
  int64_t generation = 0;
};

class ServingFrontend {
 public:
  virtual ~ServingFrontend() = default;
  // Queues the request; `on_event` is called from the core's thread, in order, and must not
  // block (post to your own executor). Refused at once (kUnavailable, kResourceExhausted) when
  // there is no capacity: then on_event is never called. Returns the request id.
  virtual Result<uint64_t> submit(CompletionRequest request, CompletionCallback on_event) = 0;
  // The client went away: stop generating and free the request's KV blocks. A final event with
  // finish_reason "cancelled" follows (unless it had already finished).
  virtual void cancel(uint64_t request_id) = 0;
  virtual ModelInfo model_info() const = 0;
  // At least one ACTIVE worker that can take requests.
  virtual bool ready() const = 0;
  virtual ServingStats stats() const = 0;
};

}  // namespace eep::coordinator
