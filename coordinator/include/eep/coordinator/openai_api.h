// The OpenAI completions protocol without sockets: request validation (JSON body ->
// CompletionRequest) and the JSON the HTTP API writes back (replies, stream chunks, errors).
// http_api.cpp does the I/O; everything here is pure and tested directly (docs/http_api.md).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "eep/common/status.h"
#include "eep/coordinator/serving.h"
#include "eep/coordinator/tokenizer.h"

namespace eep::coordinator {

// An OpenAI-style error: {"error": {"message", "type", "param", "code"}} with its HTTP status.
struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // the offending field; "" renders as null
  std::string code;   // "" renders as null
};

std::string error_body(const ApiError& error);
// A Status from the frontend as an ApiError: kInvalidArgument 400, kNotFound 404,
// kUnauthenticated 401, kResourceExhausted 429, kUnavailable 503, anything else 500.
ApiError api_error_from_status(const Status& status);

struct ParsedCompletion {
  CompletionRequest request;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

// Validates a /v1/completions body against the served model. Unknown fields are ignored; a known
// field of the wrong type or out of range is a 400 naming the field; another model is a 404.
std::variant<ParsedCompletion, ApiError> parse_completion_request(std::string_view body,
                                                                  const ModelInfo& model);

// The body of GET /v1/models.
std::string models_body(const ModelInfo& model);

// Builds one request's reply, streaming or not. Text comes from the byte tokenizer when the
// model has one, else it is "" and the ids travel in choices[0].token_ids.
class CompletionFormatter {
 public:
  CompletionFormatter(uint64_t request_id, const ModelInfo& model, int64_t created_unix_s,
                      bool include_usage);

  // Server-sent events for this event: "data: {...}\n\n" per chunk; on the last event also the
  // usage chunk (when asked for) and "data: [DONE]\n\n". An error becomes a data event with an
  // "error" object before [DONE].
  std::string stream_events(const CompletionEvent& event);

  // Non-streaming: accumulate events, then reply() once the finished event has been added.
  void add(const CompletionEvent& event);
  std::string reply() const;

  std::string id() const { return id_; }

 private:
  std::string chunk(const std::string& text, const std::vector<int32_t>& token_ids,
                    const std::string* finish_reason) const;

  std::string id_;
  std::string model_name_;
  int64_t created_;
  bool byte_text_;
  bool include_usage_;
  Utf8StreamDecoder decoder_;
  std::vector<int32_t> token_ids_;  // non-streaming: everything so far
  std::string finish_reason_;
  int prompt_tokens_ = 0;
  int completion_tokens_ = 0;
};

}  // namespace eep::coordinator
