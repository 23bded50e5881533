#include "eep/coordinator/openai_api.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>

namespace eep::coordinator {
namespace {

using nlohmann::json;

// Our strings are valid UTF-8 (sanitized); replace instead of throwing all the same.
std::string dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

ApiError invalid(std::string param, std::string message, std::string code = "invalid_value") {
  return ApiError{400, std::move(message), "invalid_request_error", std::move(param),
                  std::move(code)};
}

ApiError wrong_type(const std::string& param, const std::string& expected) {
  return invalid(param, "'" + param + "' must be " + expected, "invalid_type");
}

// A field that is absent or null is "not given" (OpenAI accepts null for optional fields).
const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<ApiError> read_number(const json& body, const char* name, float* value) {
  const json* v = field(body, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number()) return wrong_type(name, "a number");
  double number = v->get<double>();
  if (!std::isfinite(number)) return wrong_type(name, "a finite number");
  *value = static_cast<float>(number);
  return std::nullopt;
}

std::optional<ApiError> read_bool(const json& body, const char* name, bool* value) {
  const json* v = field(body, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_boolean()) return wrong_type(name, "true or false");
  *value = v->get<bool>();
  return std::nullopt;
}

// Integer token ids in [0, vocab_size).
std::optional<ApiError> read_token_ids(const json& array, const char* name, int vocab_size,
                                       std::vector<int32_t>* ids) {
  for (const json& id : array) {
    if (!id.is_number_integer()) return wrong_type(name, "an array of integer token ids");
    int64_t value = id.get<int64_t>();
    if (value < 0 || value >= vocab_size) {
      return invalid(name, "token id " + std::to_string(value) + " in '" + std::string(name) +
                               "' is outside the model's vocabulary [0, " +
                               std::to_string(vocab_size) + ")");
    }
    ids->push_back(static_cast<int32_t>(value));
  }
  return std::nullopt;
}

std::optional<ApiError> read_prompt(const json& body, const ModelInfo& model,
                                    std::vector<int32_t>* ids) {
  const json* prompt = field(body, "prompt");
  if (prompt == nullptr) return invalid("prompt", "'prompt' is required", "missing_required");
  if (prompt->is_string()) {
    if (!model.byte_tokenizer) {
      return invalid("prompt",
                     "model '" + model.name +
                         "' has no tokenizer in this server yet: send 'prompt' as an array of "
                         "integer token ids",
                     "tokenizer_unavailable");
    }
    auto encoded = byte_encode(prompt->get_ref<const std::string&>(), model.vocab_size);
    if (!encoded.is_ok()) return invalid("prompt", encoded.status().message());
    *ids = std::move(encoded).value();
  } else if (prompt->is_array()) {
    if (!prompt->empty() && (prompt->front().is_string() || prompt->front().is_array())) {
      return invalid("prompt",
                     "batched prompts (an array of strings or of token arrays) are not "
                     "supported: send one prompt per request",
                     "unsupported_value");
    }
    if (auto e = read_token_ids(*prompt, "prompt", model.vocab_size, ids)) return e;
  } else {
    return wrong_type("prompt", "a string or an array of integer token ids");
  }
  if (ids->empty()) return invalid("prompt", "'prompt' must not be empty");
  if (static_cast<int64_t>(ids->size()) >= model.max_model_len) {
    return invalid("prompt",
                   "the prompt has " + std::to_string(ids->size()) +
                       " tokens; this model's context length is " +
                       std::to_string(model.max_model_len) +
                       " tokens, which must also hold at least one generated token",
                   "context_length_exceeded");
  }
  return std::nullopt;
}

// OpenAI fields this server does not implement: accepted only at their neutral value, so a
// client never gets silently different behaviour.
std::optional<ApiError> refuse_unsupported(const json& body) {
  auto unsupported = [](const char* name, const std::string& why) {
    return invalid(name, "'" + std::string(name) + "' " + why, "unsupported_value");
  };
  for (const char* name : {"n", "best_of"}) {
    const json* v = field(body, name);
    if (v != nullptr && !(v->is_number_integer() && v->get<int64_t>() == 1)) {
      return unsupported(name, "must be 1: one completion per request is supported");
    }
  }
  if (const json* v = field(body, "echo"); v != nullptr && !(v->is_boolean() && !v->get<bool>())) {
    return unsupported("echo", "is not supported");
  }
  if (const json* v = field(body, "logprobs"); v != nullptr) {
    return unsupported("logprobs", "is not supported; leave it null");
  }
  if (const json* v = field(body, "suffix"); v != nullptr && !(v->is_string() && v->empty())) {
    return unsupported("suffix", "is not supported");
  }
  if (const json* v = field(body, "stop");
      v != nullptr && !(v->is_string() && v->empty()) && !(v->is_array() && v->empty())) {
    return unsupported("stop", "strings are not supported: use 'stop_token_ids'");
  }
  for (const char* name : {"presence_penalty", "frequency_penalty"}) {
    const json* v = field(body, name);
    if (v != nullptr && !(v->is_number() && v->get<double>() == 0.0)) {
      return unsupported(name, "is not supported; leave it 0");
    }
  }
  if (const json* v = field(body, "logit_bias"); v != nullptr && !(v->is_object() && v->empty())) {
    return unsupported("logit_bias", "is not supported");
  }
  return std::nullopt;
}

}  // namespace

std::string error_body(const ApiError& error) {
  json body = {{"error",
                {{"message", error.message},
                 {"type", error.type},
                 {"param", error.param.empty() ? json(nullptr) : json(error.param)},
                 {"code", error.code.empty() ? json(nullptr) : json(error.code)}}}};
  return dump(body);
}

ApiError api_error_from_status(const Status& status) {
  switch (status.code()) {
    case ErrorCode::kInvalidArgument:
      return {400, status.message(), "invalid_request_error", "", "invalid_value"};
    case ErrorCode::kNotFound:
      return {404, status.message(), "invalid_request_error", "", "not_found"};
    case ErrorCode::kUnauthenticated:
      return {401, status.message(), "invalid_request_error", "", "invalid_api_key"};
    case ErrorCode::kResourceExhausted:
      return {429, status.message(), "rate_limit_exceeded", "", "rate_limit_exceeded"};
    case ErrorCode::kUnavailable:
      return {503, status.message(), "service_unavailable", "", "service_unavailable"};
    default:
      return {500, status.to_string(), "server_error", "", "internal_error"};
  }
}

std::variant<ParsedCompletion, ApiError> parse_completion_request(std::string_view body_text,
                                                                  const ModelInfo& model) {
  if (body_text.empty()) {
    return invalid("",
                   "the request has no body: send a JSON object (with Content-Length or chunked "
                   "transfer encoding)",
                   "invalid_json");
  }
  json body = json::parse(body_text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) {
    return invalid("", "the request body is not valid JSON", "invalid_json");
  }
  if (!body.is_object()) {
    return invalid("", "the request body must be a JSON object", "invalid_json");
  }

  ParsedCompletion parsed;
  CompletionRequest& request = parsed.request;
  // The model is optional (vLLM's behaviour): a single-model server knows which one is meant.
  if (const json* name = field(body, "model")) {
    if (!name->is_string()) return wrong_type("model", "a string");
    if (name->get_ref<const std::string&>() != model.name) {
      return ApiError{404,
                      "The model '" + name->get<std::string>() +
                          "' does not exist; this server serves '" + model.name +
                          "' (GET /v1/models)",
                      "invalid_request_error", "model", "model_not_found"};
    }
  }
  if (auto e = read_prompt(body, model, &request.prompt_ids)) return *e;
  if (auto e = refuse_unsupported(body)) return *e;

  const int max_new = model.max_model_len - static_cast<int>(request.prompt_ids.size());
  request.max_tokens = std::min(16, max_new);  // OpenAI's default, within the context
  if (const json* v = field(body, "max_tokens")) {
    if (!v->is_number_integer()) return wrong_type("max_tokens", "an integer");
    int64_t max_tokens = v->get<int64_t>();
    if (max_tokens < 1 || max_tokens > max_new) {
      return invalid("max_tokens",
                     "'max_tokens' is " + std::to_string(max_tokens) + "; with a prompt of " +
                         std::to_string(request.prompt_ids.size()) +
                         " tokens and a context length of " + std::to_string(model.max_model_len) +
                         " it must be in [1, " + std::to_string(max_new) + "]");
    }
    request.max_tokens = static_cast<int>(max_tokens);
  }
  if (auto e = read_number(body, "temperature", &request.temperature)) return *e;
  if (request.temperature < 0.0f || request.temperature > 2.0f) {
    return invalid("temperature", "'temperature' must be in [0, 2]");
  }
  if (auto e = read_number(body, "top_p", &request.top_p)) return *e;
  if (!(request.top_p > 0.0f && request.top_p <= 1.0f)) {
    return invalid("top_p", "'top_p' must be in (0, 1]");
  }
  if (const json* v = field(body, "seed")) {
    if (!v->is_number_integer()) return wrong_type("seed", "an integer");
    request.seed =
        v->is_number_unsigned() ? v->get<uint64_t>() : static_cast<uint64_t>(v->get<int64_t>());
  }
  if (auto e = read_bool(body, "ignore_eos", &request.ignore_eos)) return *e;
  if (const json* v = field(body, "stop_token_ids")) {
    if (!v->is_array()) return wrong_type("stop_token_ids", "an array of integer token ids");
    if (auto e = read_token_ids(*v, "stop_token_ids", model.vocab_size, &request.stop_token_ids)) {
      return *e;
    }
  }
  if (auto e = read_bool(body, "stream", &parsed.stream)) return *e;
  if (const json* options = field(body, "stream_options")) {
    if (!options->is_object()) return wrong_type("stream_options", "an object");
    if (auto e = read_bool(*options, "include_usage", &parsed.include_usage)) {
      e->param = "stream_options.include_usage";
      return *e;
    }
  }
  return parsed;
}

std::string models_body(const ModelInfo& model) {
  json entry = {{"id", model.name},
                {"object", "model"},
                {"created", model.created},
                {"owned_by", "elastic-ep"},
                {"max_model_len", model.max_model_len}};
  return dump(json{{"object", "list"}, {"data", json::array({entry})}});
}

CompletionFormatter::CompletionFormatter(uint64_t request_id, const ModelInfo& model,
                                         int64_t created_unix_s, bool include_usage)
    : id_("cmpl-" + std::to_string(request_id)),
      model_name_(model.name),
      created_(created_unix_s),
      byte_text_(model.byte_tokenizer),
      include_usage_(include_usage) {}

std::string CompletionFormatter::chunk(const std::string& text,
                                       const std::vector<int32_t>& token_ids,
                                       const std::string* finish_reason) const {
  json choice = {{"index", 0},
                 {"text", text},
                 {"logprobs", nullptr},
                 {"finish_reason", finish_reason ? json(*finish_reason) : json(nullptr)},
                 {"token_ids", token_ids}};
  json body = {{"id", id_},
               {"object", "text_completion"},
               {"created", created_},
               {"model", model_name_},
               {"choices", json::array({choice})}};
  if (include_usage_) body["usage"] = nullptr;  // OpenAI: null on every chunk but the last
  return "data: " + dump(body) + "\n\n";
}

std::string CompletionFormatter::stream_events(const CompletionEvent& event) {
  std::string out;
  if (event.finished && !event.status.is_ok()) {
    out += "data: " + error_body(api_error_from_status(event.status)) + "\n\n";
    return out + "data: [DONE]\n\n";
  }
  std::string text = byte_text_ ? decoder_.push(event.new_tokens) : std::string();
  if (!event.finished) {
    if (!event.new_tokens.empty()) out += chunk(text, event.new_tokens, nullptr);
    return out;
  }
  if (byte_text_) text += decoder_.finish();
  out += chunk(text, event.new_tokens, &event.finish_reason);
  if (include_usage_) {
    json usage = {{"id", id_},
                  {"object", "text_completion"},
                  {"created", created_},
                  {"model", model_name_},
                  {"choices", json::array()},
                  {"usage",
                   {{"prompt_tokens", event.prompt_tokens},
                    {"completion_tokens", event.completion_tokens},
                    {"total_tokens", event.prompt_tokens + event.completion_tokens}}}};
    out += "data: " + dump(usage) + "\n\n";
  }
  return out + "data: [DONE]\n\n";
}

void CompletionFormatter::add(const CompletionEvent& event) {
  token_ids_.insert(token_ids_.end(), event.new_tokens.begin(), event.new_tokens.end());
  if (event.finished) finish_reason_ = event.finish_reason;
  prompt_tokens_ = event.prompt_tokens;
  completion_tokens_ = event.completion_tokens;
}

std::string CompletionFormatter::reply() const {
  std::string text = byte_text_ ? sanitize_utf8(byte_decode(token_ids_)) : std::string();
  json choice = {{"index", 0},
                 {"text", text},
                 {"logprobs", nullptr},
                 {"finish_reason", finish_reason_},
                 {"token_ids", token_ids_}};
  json body = {{"id", id_},
               {"object", "text_completion"},
               {"created", created_},
               {"model", model_name_},
               {"choices", json::array({choice})},
               {"usage",
                {{"prompt_tokens", prompt_tokens_},
                 {"completion_tokens", completion_tokens_},
                 {"total_tokens", prompt_tokens_ + completion_tokens_}}}};
  return dump(body);
}

}  // namespace eep::coordinator
