// The reply to one OpenAI request of n choices, /v1/completions or /v1/chat/completions,
// streamed or not: each choice's generated ids become text (TextStream), `stop` strings end a
// choice (StopStringMatcher: the string excluded, the request then cancelled on the core), and
// log-probabilities take OpenAI's shape (the legacy object of completions, logprobs.content of
// chat). No I/O: the HTTP session feeds the core's events in and writes out what comes back
// (docs/http_api.md). One request's builder is used by one thread at a time.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eep/coordinator/api_error.h"
#include "eep/coordinator/model_text.h"
#include "eep/coordinator/serving.h"
#include "eep/coordinator/stop_strings.h"

namespace eep::coordinator {

enum class ApiKind { kCompletion, kChat };

// What a request asked of its reply (parsed in openai_api.cpp and chat_api.cpp).
struct ReplyOptions {
  ApiKind kind = ApiKind::kCompletion;
  int n = 1;  // choices: request i of the n has choice index i
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool skip_special_tokens = true;
  std::vector<std::string> stop;  // strings, matched on the text
  int logprobs = -1;              // -1: none; k >= 0: each token's and the top k
  bool echo = false;              // completions: the prompt's text before each choice's
  std::string echo_text;
};

class ReplyBuilder {
 public:
  // `first_request_id` names the reply ("cmpl-17", "chatcmpl-17").
  ReplyBuilder(uint64_t first_request_id, const ModelInfo& model, int64_t created_unix_s,
               ReplyOptions options);

  struct Update {
    std::string events;   // streaming: server-sent events to write now (may be empty)
    bool cancel = false;  // a stop string ended this choice: cancel its request on the core
  };
  // Streaming: what goes out before any token (chat: each choice's role; completions with echo:
  // the prompt's text).
  std::string stream_start() const;
  // One core event of choice `choice_idx`. Events of a choice that already ended (on a stop
  // string) are ignored. The last choice to end adds usage (when asked) and [DONE]; a failed
  // choice ends the whole reply (an error event, then [DONE]).
  Update on_event(int choice_idx, const CompletionEvent& event);

  // Every choice ended, or one failed.
  bool done() const;
  const std::optional<ApiError>& failure() const { return failure_; }
  // Not streaming, once done() without failure: the whole reply.
  std::string reply() const;
  const std::string& id() const { return id_; }

 private:
  struct TokenLogprob {
    int32_t id = 0;
    float logprob = 0.0f;
    size_t text_offset = 0;  // where the token's text starts in the choice's text
    std::vector<std::pair<int32_t, float>> top;
  };
  struct Choice {
    Choice(const ModelInfo& model, const ReplyOptions& options);
    TextStream text_stream;
    StopStringMatcher stop;
    size_t generated_bytes = 0;  // text decoded so far, held-back or not
    bool finished = false;
    std::string finish_reason;
    int num_tokens = 0;
    // Streaming: what this event brought; not streaming: everything.
    std::string text;
    std::vector<int32_t> token_ids;
    std::vector<TokenLogprob> logprobs;
  };
  // Adds the event's tokens to the choice; true when a stop string ended it.
  bool consume(Choice& choice, const CompletionEvent& event);
  nlohmann::ordered_json logprobs_json(const Choice& choice) const;
  nlohmann::ordered_json top_entry(int32_t id, float logprob) const;
  nlohmann::ordered_json envelope(bool chunk) const;
  nlohmann::ordered_json usage() const;
  std::string chunk(int choice_idx, const Choice& choice, const std::string* finish_reason) const;
  std::string finish_stream() const;

  std::string id_;
  ModelInfo model_;
  int64_t created_;
  ReplyOptions options_;
  std::vector<Choice> choices_;
  int num_finished_ = 0;
  int prompt_tokens_ = 0;
  std::optional<ApiError> failure_;
};

}  // namespace eep::coordinator
