#include "eep/coordinator/jinja/chat_template.h"

#include <ctime>

#include "eep/coordinator/jinja/interpreter.h"

namespace eep::coordinator::jinja {

namespace {

// The special tokens of HF's special_tokens_map that a template may use.
constexpr std::string_view kSpecialTokenNames[] = {
    "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"};

Status invalid(const std::string& message) {
  return error(ErrorCode::kInvalidArgument, message);
}

Result<Value> strftime_now(const std::function<std::chrono::system_clock::time_point()>& now,
                           CallArgs& args) {
  const Value* format = args.get(0, "format");
  if (!format || !format->is_string()) return invalid("strftime_now() needs a format string");
  if (format->as_string().size() > 256)
    return invalid("strftime_now() format is longer than 256 bytes");
  std::time_t t =
      std::chrono::system_clock::to_time_t(now ? now() : std::chrono::system_clock::now());
  std::tm local{};
  localtime_r(&t, &local);
  char buffer[1024];
  size_t length = std::strftime(buffer, sizeof(buffer), format->as_string().c_str(), &local);
  if (length == 0 && !format->as_string().empty())
    return invalid("strftime_now() output is too long or empty");
  return Value(std::string(buffer, length));
}

}  // namespace

Result<ChatTemplate> ChatTemplate::create(std::string_view source,
                                          const nlohmann::json& special_tokens,
                                          const ChatTemplateOptions& options) {
  if (!special_tokens.is_object()) return invalid("special tokens must be a JSON object");
  ChatTemplate chat;
  EEP_ASSIGN_OR_RETURN(Template parsed, Template::parse(source, options.template_options));
  chat.templates_.emplace("default", std::move(parsed));
  chat.special_tokens_ = special_tokens;
  chat.now_ = options.now;
  return chat;
}

Result<ChatTemplate> ChatTemplate::from_tokenizer_config(const nlohmann::json& config,
                                                         const ChatTemplateOptions& options) {
  if (!config.is_object()) return invalid("tokenizer_config.json must hold a JSON object");
  ChatTemplate chat;
  chat.now_ = options.now;
  for (std::string_view name : kSpecialTokenNames) {
    auto it = config.find(name);
    if (it == config.end()) continue;
    if (it->is_string()) {
      chat.special_tokens_[std::string(name)] = *it;
    } else if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
      chat.special_tokens_[std::string(name)] = (*it)["content"];
    }
  }
  auto source = config.find("chat_template");
  if (source == config.end() || source->is_null()) {
    return invalid("tokenizer_config.json has no chat_template");
  }
  if (source->is_string()) {
    auto parsed = Template::parse(source->get<std::string>(), options.template_options);
    if (!parsed.is_ok()) return invalid("chat_template: " + parsed.status().message());
    chat.templates_.emplace("default", std::move(parsed).value());
  } else if (source->is_array()) {
    for (const auto& entry : *source) {
      if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string() ||
          !entry.contains("template") || !entry["template"].is_string()) {
        return invalid("chat_template list entries must be {\"name\": ..., \"template\": ...}");
      }
      std::string name = entry["name"].get<std::string>();
      auto parsed = Template::parse(entry["template"].get<std::string>(), options.template_options);
      if (!parsed.is_ok())
        return invalid("chat_template '" + name + "': " + parsed.status().message());
      chat.templates_.emplace(name, std::move(parsed).value());
    }
    if (chat.templates_.count("default") == 0)
      return invalid("chat_template list has no \"default\" template");
  } else {
    return invalid("chat_template must be a string or a list of named templates");
  }
  return chat;
}

Result<std::string> ChatTemplate::render(const ChatTemplateInputs& inputs) const {
  if (!inputs.messages.is_array()) return invalid("messages must be a list");
  if (!inputs.tools.is_null() && !inputs.tools.is_array())
    return invalid("tools must be a list or null");
  if (!inputs.documents.is_null() && !inputs.documents.is_array())
    return invalid("documents must be a list or null");
  if (!inputs.template_kwargs.is_object()) return invalid("chat_template_kwargs must be an object");
  try {
    ValueDict variables;
    variables.set("messages", Value::from_json(inputs.messages));
    variables.set("tools", Value::from_json(inputs.tools));
    variables.set("documents", Value::from_json(inputs.documents));
    variables.set("add_generation_prompt", Value(inputs.add_generation_prompt));
    for (const auto& [name, token] : special_tokens_.items())
      variables.set(name, Value::from_json(token));
    for (const auto& [name, value] : inputs.template_kwargs.items())
      variables.set(name, Value::from_json(value));

    ValueDict globals;
    globals.set("raise_exception",
                Value::callable("raise_exception",
                                [](Interpreter& interpreter, CallArgs& args) -> Result<Value> {
                                  const Value* message = args.get(0, "message");
                                  return interpreter.template_raised(
                                      "the chat template refused the request: " +
                                      (message ? message->str() : std::string("(no message)")));
                                }));
    auto now = now_;
    globals.set("strftime_now",
                Value::callable("strftime_now", [now](Interpreter&, CallArgs& args) {
                  return strftime_now(now, args);
                }));

    auto it = templates_.end();
    if (!inputs.tools.is_null()) it = templates_.find("tool_use");
    if (it == templates_.end()) it = templates_.find("default");
    return it->second.render(variables, globals);
  } catch (const std::exception& e) {
    return error(ErrorCode::kResourceExhausted,
                 std::string("rendering the chat template failed: ") + e.what());
  }
}

}  // namespace eep::coordinator::jinja
