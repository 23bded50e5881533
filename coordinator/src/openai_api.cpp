#include "eep/coordinator/openai_api.h"

#include <algorithm>
#include <cmath>

#include "eep/coordinator/model_text.h"
#include "eep/coordinator/text/tokenizer_config.h"

namespace eep::coordinator {
namespace {

using nlohmann::ordered_json;

// OpenAI's limits: four stop strings; vLLM's default --max-logprobs.
constexpr size_t kMaxStopStrings = 4;
constexpr int kMaxLogprobs = 20;
// n choices are n requests on the fleet: a bound keeps one request from filling the queue.
constexpr int kMaxChoices = 16;

ApiError wrong_type(const std::string& param, const std::string& expected) {
  return invalid_request(param, "'" + param + "' must be " + expected, "invalid_type");
}

ApiError unsupported(const std::string& param, const std::string& why) {
  return invalid_request(param, "'" + param + "' " + why, "unsupported_value");
}

ApiError out_of_range(const std::string& param, const std::string& range) {
  return invalid_request(param, "'" + param + "' must be " + range);
}

// A field that is absent or null is "not given" (OpenAI accepts null for optional fields).
const ordered_json* field(const ordered_json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<ApiError> read_number(const ordered_json& body, const char* name, float* value) {
  const ordered_json* v = field(body, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number()) return wrong_type(name, "a number");
  double number = v->get<double>();
  if (!std::isfinite(number)) return wrong_type(name, "a finite number");
  *value = static_cast<float>(number);
  return std::nullopt;
}

std::optional<ApiError> read_int(const ordered_json& body, const char* name, int64_t* value) {
  const ordered_json* v = field(body, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number_integer()) return wrong_type(name, "an integer");
  *value = v->is_number_unsigned() && v->get<uint64_t>() > uint64_t{INT64_MAX} ? INT64_MAX
                                                                               : v->get<int64_t>();
  return std::nullopt;
}

std::optional<ApiError> read_bool(const ordered_json& body, const char* name, bool* value) {
  const ordered_json* v = field(body, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_boolean()) return wrong_type(name, "true or false");
  *value = v->get<bool>();
  return std::nullopt;
}

// Integer token ids in [0, vocab_size).
std::optional<ApiError> read_token_ids(const ordered_json& array, const char* name, int vocab_size,
                                       std::vector<int32_t>* ids) {
  for (const ordered_json& id : array) {
    if (!id.is_number_integer()) return wrong_type(name, "an array of integer token ids");
    int64_t value = id.get<int64_t>();
    if (id.is_number_unsigned() && id.get<uint64_t>() > uint64_t{INT64_MAX}) value = INT64_MAX;
    if (value < 0 || value >= vocab_size) {
      return invalid_request(
          name, "token id " + std::to_string(value) + " in '" + std::string(name) +
                    "' is outside the model's vocabulary [0, " + std::to_string(vocab_size) + ")");
    }
    ids->push_back(static_cast<int32_t>(value));
  }
  return std::nullopt;
}

// The prompt's ids; its text too (for echo) when it came as text.
std::optional<ApiError> read_prompt(const ordered_json& body, const ModelInfo& model,
                                    std::vector<int32_t>* ids, std::optional<std::string>* text) {
  const ordered_json* prompt = field(body, "prompt");
  if (prompt == nullptr) {
    return invalid_request("prompt", "'prompt' is required", "missing_required");
  }
  if (prompt->is_string()) {
    const std::string& prompt_text = prompt->get_ref<const std::string&>();
    if (tokenizer_kind(model) == TokenizerKind::kNone) {
      return invalid_request("prompt",
                             "model '" + model.name +
                                 "' has no tokenizer (no tokenizer.json in its checkpoint): send "
                                 "'prompt' as an array of integer token ids",
                             "tokenizer_unavailable");
    }
    auto encoded = encode_text(model, prompt_text, /*add_special_tokens=*/true);
    if (!encoded.is_ok()) return invalid_request("prompt", encoded.status().message());
    *ids = std::move(encoded).value();
    *text = prompt_text;
    for (int32_t id : *ids) {
      if (id >= model.vocab_size) {
        return invalid_request("prompt", "the tokenizer gave token id " + std::to_string(id) +
                                             ", outside the model's vocabulary [0, " +
                                             std::to_string(model.vocab_size) + ")");
      }
    }
  } else if (prompt->is_array()) {
    if (!prompt->empty() && (prompt->front().is_string() || prompt->front().is_array())) {
      return unsupported("prompt",
                         "as a batch (an array of strings or of token arrays) is not supported: "
                         "send one prompt per request, or n for several completions");
    }
    if (auto e = read_token_ids(*prompt, "prompt", model.vocab_size, ids)) return e;
  } else {
    return wrong_type("prompt", "a string or an array of integer token ids");
  }
  if (ids->empty()) return invalid_request("prompt", "'prompt' must not be empty");
  return check_prompt_length(ids->size(), model);
}

// `stop`: a string or up to four strings.
std::optional<ApiError> read_stop(const ordered_json& body, std::vector<std::string>* stop) {
  const ordered_json* v = field(body, "stop");
  if (v == nullptr) return std::nullopt;
  if (v->is_string()) {
    stop->push_back(v->get<std::string>());
  } else if (v->is_array()) {
    if (v->size() > kMaxStopStrings) {
      return out_of_range("stop", "at most " + std::to_string(kMaxStopStrings) + " strings");
    }
    for (const ordered_json& entry : *v) {
      if (!entry.is_string()) return wrong_type("stop", "a string or an array of strings");
      stop->push_back(entry.get<std::string>());
    }
  } else {
    return wrong_type("stop", "a string or an array of strings");
  }
  return std::nullopt;
}

// The log-probability fields: completions' `logprobs` (an integer k), chat's `logprobs` (a bool)
// with `top_logprobs` (k).
std::optional<ApiError> read_logprobs(const ordered_json& body, ApiKind kind, int* logprobs) {
  auto top_k = [](const char* name, int64_t value) -> std::optional<ApiError> {
    if (value < 0 || value > kMaxLogprobs) {
      return out_of_range(name, "in [0, " + std::to_string(kMaxLogprobs) + "]");
    }
    return std::nullopt;
  };
  if (kind == ApiKind::kCompletion) {
    int64_t k = -1;
    if (auto e = read_int(body, "logprobs", &k)) return e;
    if (field(body, "logprobs") != nullptr) {
      if (auto e = top_k("logprobs", k)) return e;
    }
    *logprobs = static_cast<int>(k);
    return std::nullopt;
  }
  bool wanted = false;
  if (auto e = read_bool(body, "logprobs", &wanted)) return e;
  int64_t k = 0;
  if (auto e = read_int(body, "top_logprobs", &k)) return e;
  if (auto e = top_k("top_logprobs", k)) return e;
  if (field(body, "top_logprobs") != nullptr && !wanted) {
    return invalid_request("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  }
  *logprobs = wanted ? static_cast<int>(k) : -1;
  return std::nullopt;
}

// OpenAI fields this server does not implement: accepted only at their neutral value, so a
// client never gets silently different behaviour.
std::optional<ApiError> refuse_unsupported(const ordered_json& body, ApiKind kind, int n) {
  if (const ordered_json* v = field(body, "best_of");
      v != nullptr &&
      !(v->is_number_integer() && (v->get<int64_t>() == 1 || v->get<int64_t>() == n))) {
    return unsupported("best_of", "must equal n: best-of sampling is not supported");
  }
  if (const ordered_json* v = field(body, "suffix");
      v != nullptr && !(v->is_string() && v->empty())) {
    return unsupported("suffix", "is not supported");
  }
  if (const ordered_json* v = field(body, "logit_bias");
      v != nullptr && !(v->is_object() && v->empty())) {
    return unsupported("logit_bias", "is not supported");
  }
  if (kind == ApiKind::kChat) {
    if (const ordered_json* v = field(body, "echo");
        v != nullptr && !(v->is_boolean() && !v->get<bool>())) {
      return unsupported("echo", "is not supported by chat completions");
    }
    if (const ordered_json* v = field(body, "response_format");
        v != nullptr && !(v->is_object() && v->value("type", "") == "text")) {
      return unsupported("response_format", "other than {\"type\": \"text\"} is not supported");
    }
  }
  return std::nullopt;
}

// The checkpoint's generation_config.json, for what a request leaves out.
const text::GenerationConfig* generation_defaults(const ModelInfo& model) {
  return model.tokenizer ? &model.tokenizer->generation_config() : nullptr;
}

}  // namespace

std::variant<ordered_json, ApiError> parse_json_body(std::string_view body_text) {
  if (body_text.empty()) {
    return invalid_request("",
                           "the request has no body: send a JSON object (with Content-Length or "
                           "chunked transfer encoding)",
                           "invalid_json");
  }
  ordered_json body = ordered_json::parse(body_text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) {
    return invalid_request("", "the request body is not valid JSON", "invalid_json");
  }
  if (!body.is_object()) {
    return invalid_request("", "the request body must be a JSON object", "invalid_json");
  }
  return body;
}

std::optional<ApiError> check_model(const ordered_json& body, const ModelInfo& model) {
  const ordered_json* name = field(body, "model");
  if (name == nullptr) return std::nullopt;
  if (!name->is_string()) return wrong_type("model", "a string");
  if (name->get_ref<const std::string&>() == model.name) return std::nullopt;
  return ApiError{404,
                  "The model '" + name->get<std::string>() +
                      "' does not exist; this server serves '" + model.name + "' (GET /v1/models)",
                  "invalid_request_error", "model", "model_not_found"};
}

std::optional<ApiError> check_prompt_length(size_t num_ids, const ModelInfo& model) {
  if (static_cast<int64_t>(num_ids) < model.max_model_len) return std::nullopt;
  return invalid_request("prompt",
                         "the prompt has " + std::to_string(num_ids) +
                             " tokens; this model's context length is " +
                             std::to_string(model.max_model_len) +
                             " tokens, which must also hold at least one generated token",
                         "context_length_exceeded");
}

std::optional<ApiError> parse_shared_fields(const ordered_json& body, const ModelInfo& model,
                                            ParsedCompletion& parsed) {
  CompletionRequest& request = parsed.request;
  ReplyOptions& reply = parsed.reply;
  const bool chat = reply.kind == ApiKind::kChat;

  int64_t n = 1;
  if (auto e = read_int(body, "n", &n)) return e;
  if (n < 1 || n > kMaxChoices)
    return out_of_range("n", "in [1, " + std::to_string(kMaxChoices) + "]");
  reply.n = static_cast<int>(n);
  if (auto e = refuse_unsupported(body, reply.kind, reply.n)) return e;

  // max_tokens: OpenAI's 16 for completions; chat's default is whatever the context has left.
  const int max_new = model.max_model_len - static_cast<int>(request.prompt_ids.size());
  request.max_tokens = chat ? max_new : std::min(16, max_new);
  const char* max_tokens_name = chat && field(body, "max_completion_tokens") != nullptr
                                    ? "max_completion_tokens"
                                    : "max_tokens";
  if (const ordered_json* v = field(body, max_tokens_name)) {
    if (!v->is_number_integer()) return wrong_type(max_tokens_name, "an integer");
    int64_t max_tokens = v->get<int64_t>();
    if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t{INT64_MAX}) max_tokens = INT64_MAX;
    if (max_tokens < 1 || max_tokens > max_new) {
      return invalid_request(
          max_tokens_name,
          "'" + std::string(max_tokens_name) + "' is " + std::to_string(max_tokens) +
              "; with a prompt of " + std::to_string(request.prompt_ids.size()) +
              " tokens and a context length of " + std::to_string(model.max_model_len) +
              " it must be in [1, " + std::to_string(max_new) + "]");
    }
    request.max_tokens = static_cast<int>(max_tokens);
  }

  // Sampling: what the request gives, else generation_config.json's, else OpenAI's defaults.
  if (const text::GenerationConfig* defaults = generation_defaults(model)) {
    if (defaults->temperature) request.temperature = static_cast<float>(*defaults->temperature);
    if (defaults->top_p) request.top_p = static_cast<float>(*defaults->top_p);
    if (defaults->top_k) request.top_k = std::max(0, *defaults->top_k);
    if (defaults->repetition_penalty) {
      request.repetition_penalty = static_cast<float>(*defaults->repetition_penalty);
    }
  }
  if (auto e = read_number(body, "temperature", &request.temperature)) return e;
  if (request.temperature < 0.0f || request.temperature > 2.0f) {
    return out_of_range("temperature", "in [0, 2]");
  }
  if (auto e = read_number(body, "top_p", &request.top_p)) return e;
  if (!(request.top_p > 0.0f && request.top_p <= 1.0f)) return out_of_range("top_p", "in (0, 1]");
  int64_t top_k = request.top_k;
  if (auto e = read_int(body, "top_k", &top_k)) return e;
  if (top_k < -1 || top_k > model.vocab_size) {
    return out_of_range("top_k", "-1 or 0 (every token) or a count up to the vocabulary's " +
                                     std::to_string(model.vocab_size));
  }
  request.top_k = static_cast<int>(std::max<int64_t>(0, top_k));
  if (auto e = read_number(body, "min_p", &request.min_p)) return e;
  if (!(request.min_p >= 0.0f && request.min_p <= 1.0f)) return out_of_range("min_p", "in [0, 1]");
  for (auto [name, value] : {std::pair{"presence_penalty", &request.presence_penalty},
                             std::pair{"frequency_penalty", &request.frequency_penalty}}) {
    if (auto e = read_number(body, name, value)) return e;
    if (!(*value >= -2.0f && *value <= 2.0f)) return out_of_range(name, "in [-2, 2]");
  }
  if (auto e = read_number(body, "repetition_penalty", &request.repetition_penalty)) return e;
  if (!(request.repetition_penalty > 0.0f && request.repetition_penalty <= 2.0f)) {
    return out_of_range("repetition_penalty", "in (0, 2]");
  }
  if (const ordered_json* v = field(body, "seed")) {
    if (!v->is_number_integer()) return wrong_type("seed", "an integer");
    request.seed =
        v->is_number_unsigned() ? v->get<uint64_t>() : static_cast<uint64_t>(v->get<int64_t>());
  }

  if (auto e = read_bool(body, "ignore_eos", &request.ignore_eos)) return e;
  if (const ordered_json* v = field(body, "stop_token_ids")) {
    if (!v->is_array()) return wrong_type("stop_token_ids", "an array of integer token ids");
    if (auto e = read_token_ids(*v, "stop_token_ids", model.vocab_size, &request.stop_token_ids)) {
      return e;
    }
  }
  // The worker ends on config.json's EOS ids; generation_config.json may name more (Qwen3's
  // <|endoftext|> beside <|im_end|>): they travel as stop ids, which ignore_eos leaves out.
  if (model.tokenizer && !request.ignore_eos) {
    for (int32_t id : model.tokenizer->eos_token_ids()) {
      if (id >= 0 && id < model.vocab_size &&
          std::find(request.stop_token_ids.begin(), request.stop_token_ids.end(), id) ==
              request.stop_token_ids.end()) {
        request.stop_token_ids.push_back(id);
      }
    }
  }
  if (auto e = read_stop(body, &reply.stop)) return e;
  if (!reply.stop.empty() && tokenizer_kind(model) == TokenizerKind::kNone) {
    return unsupported("stop", "needs a tokenizer, which this model has not: use 'stop_token_ids'");
  }
  if (auto e = read_logprobs(body, reply.kind, &reply.logprobs)) return e;
  request.logprobs = reply.logprobs;
  if (auto e = read_bool(body, "skip_special_tokens", &reply.skip_special_tokens)) return e;

  if (auto e = read_bool(body, "stream", &reply.stream)) return e;
  if (const ordered_json* options = field(body, "stream_options")) {
    if (!options->is_object()) return wrong_type("stream_options", "an object");
    if (auto e = read_bool(*options, "include_usage", &reply.include_usage)) {
      e->param = "stream_options.include_usage";
      e->message = "'stream_options.include_usage' must be true or false";
      return e;
    }
  }
  return std::nullopt;
}

CompletionRequest request_for_choice(const ParsedCompletion& parsed, int choice_idx) {
  CompletionRequest request = parsed.request;
  if (request.seed) *request.seed += static_cast<uint64_t>(choice_idx);
  return request;
}

std::variant<ParsedCompletion, ApiError> parse_completion_request(std::string_view body_text,
                                                                  const ModelInfo& model) {
  auto body_or = parse_json_body(body_text);
  if (auto* e = std::get_if<ApiError>(&body_or)) return *e;
  const ordered_json& body = std::get<ordered_json>(body_or);
  if (auto e = check_model(body, model)) return *e;

  ParsedCompletion parsed;
  parsed.reply.kind = ApiKind::kCompletion;
  std::optional<std::string> prompt_text;
  if (auto e = read_prompt(body, model, &parsed.request.prompt_ids, &prompt_text)) return *e;
  if (auto e = parse_shared_fields(body, model, parsed)) return *e;
  if (auto e = read_bool(body, "echo", &parsed.reply.echo)) return *e;
  if (parsed.reply.echo) {
    if (parsed.reply.logprobs >= 0) {
      return unsupported("echo", "with 'logprobs' is not supported (no prompt log-probabilities)");
    }
    parsed.reply.echo_text = prompt_text ? *prompt_text
                                         : decode_ids(model, parsed.request.prompt_ids,
                                                      parsed.reply.skip_special_tokens);
  }
  return parsed;
}

std::string models_body(const ModelInfo& model) {
  ordered_json entry = {{"id", model.name},
                        {"object", "model"},
                        {"created", model.created},
                        {"owned_by", "elastic-ep"},
                        {"max_model_len", model.max_model_len},
                        {"tokenizer", to_string(tokenizer_kind(model))},
                        {"chat_template", model.chat_template != nullptr}};
  return ordered_json{{"object", "list"}, {"data", ordered_json::array({entry})}}.dump(
      -1, ' ', false, ordered_json::error_handler_t::replace);
}

}  // namespace eep::coordinator
