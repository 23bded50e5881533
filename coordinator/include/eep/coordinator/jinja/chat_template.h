// A model's chat template rendered the way Hugging Face's apply_chat_template renders it: the
// template gets `messages`, `tools` (none when not given), `documents` (none),
// `add_generation_prompt`, the tokenizer's special tokens (bos_token, eos_token, ...), then the
// request's chat_template_kwargs (e.g. enable_thinking) over those; `raise_exception(msg)` fails
// the render with the template's message, and `strftime_now(fmt)` formats the current local
// time. Thread-safe after creation (rendering does not change it).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "eep/common/status.h"
#include "eep/coordinator/jinja/template.h"

namespace eep::coordinator::jinja {

// ordered_json, so that what the template writes back (tools | tojson) keeps the request's member
// order as Python would: parse the request body with nlohmann::ordered_json::parse.
struct ChatTemplateInputs {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();  // [{role, content}, ...]
  nlohmann::ordered_json tools = nullptr;      // a list of tool schemas, or null
  nlohmann::ordered_json documents = nullptr;  // a list of documents, or null
  bool add_generation_prompt = false;
  // The request's chat_template_kwargs, merged over everything above (as HF's **kwargs are).
  nlohmann::ordered_json template_kwargs = nlohmann::ordered_json::object();
};

struct ChatTemplateOptions {
  TemplateOptions template_options;
  // What strftime_now formats; the system clock unless a test fixes it.
  std::function<std::chrono::system_clock::time_point()> now;
};

class ChatTemplate {
 public:
  // A template source and the special tokens it may reference ({"bos_token": "<s>", ...}).
  static Result<ChatTemplate> create(std::string_view source, const nlohmann::json& special_tokens,
                                     const ChatTemplateOptions& options = {});
  // From a checkpoint's tokenizer_config.json: `chat_template` as a string, or a list of
  // {name, template} (the "tool_use" one is used when tools are given and it exists, else
  // "default"); the special tokens as strings or AddedToken objects ({"content": ...}).
  static Result<ChatTemplate> from_tokenizer_config(const nlohmann::json& config,
                                                    const ChatTemplateOptions& options = {});

  // The prompt text. kInvalidArgument when the inputs are malformed, when the template fails
  // (with its line and column) or when it calls raise_exception (with the template's message).
  Result<std::string> render(const ChatTemplateInputs& inputs) const;

  const nlohmann::json& special_tokens() const { return special_tokens_; }

 private:
  ChatTemplate() = default;
  std::map<std::string, Template, std::less<>> templates_;  // by name; "default" at least
  nlohmann::json special_tokens_ = nlohmann::json::object();
  std::function<std::chrono::system_clock::time_point()> now_;
};

}  // namespace eep::coordinator::jinja
