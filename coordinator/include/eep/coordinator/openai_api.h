// The OpenAI request side without sockets: a /v1/completions body -> the CompletionRequest the
// core runs and the ReplyOptions its reply follows; the fields /v1/completions and
// /v1/chat/completions share (sampling, stop, n, logprobs, stream); /v1/models. http_api.cpp
// does the I/O, chat_api.cpp the chat messages, openai_reply.cpp the replies; everything here is
// pure and tested directly (docs/http_api.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "eep/common/status.h"
#include "eep/coordinator/api_error.h"
#include "eep/coordinator/openai_reply.h"
#include "eep/coordinator/serving.h"

namespace eep::coordinator {

struct ParsedCompletion {
  // The request of choice 0. Choice i of n is the same request with seed + i (when a seed is
  // given; else each gets its own seed): see request_for_choice.
  CompletionRequest request;
  ReplyOptions reply;
};

CompletionRequest request_for_choice(const ParsedCompletion& parsed, int choice_idx);

// Validates a /v1/completions body against the served model. Unknown fields are ignored; a known
// field of the wrong type or out of range is a 400 naming the field; another model is a 404.
std::variant<ParsedCompletion, ApiError> parse_completion_request(std::string_view body,
                                                                  const ModelInfo& model);

// The body of GET /v1/models.
std::string models_body(const ModelInfo& model);

// Shared with chat_api.cpp.
// The body as a JSON object (member order kept, as a chat template may print it back).
std::variant<nlohmann::ordered_json, ApiError> parse_json_body(std::string_view body);
// A "model" that names another model is a 404 (it may be left out, as vLLM allows).
std::optional<ApiError> check_model(const nlohmann::ordered_json& body, const ModelInfo& model);
// A prompt of `num_ids` must leave room for a generated token (else context_length_exceeded).
std::optional<ApiError> check_prompt_length(size_t num_ids, const ModelInfo& model);
// Everything but the prompt (parsed.request.prompt_ids set already): max_tokens (chat:
// max_completion_tokens), sampling (temperature, top_p, top_k, min_p, penalties, seed; the
// checkpoint's generation_config.json gives defaults), ignore_eos and the EOS ids,
// stop_token_ids, stop, n, logprobs, stream, stream_options, skip_special_tokens; fields that
// stay unsupported are refused unless neutral.
std::optional<ApiError> parse_shared_fields(const nlohmann::ordered_json& body,
                                            const ModelInfo& model, ParsedCompletion& parsed);

}  // namespace eep::coordinator
