#include "eep/coordinator/chat_api.h"

#include <algorithm>
#include <array>

#include "eep/coordinator/model_text.h"

namespace eep::coordinator {
namespace {

using nlohmann::ordered_json;

constexpr std::array<std::string_view, 5> kRoles = {"system", "developer", "user", "assistant",
                                                    "tool"};

const ordered_json* field(const ordered_json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

// A message's content as the template sees it: a string (text parts joined), or null.
std::variant<ordered_json, ApiError> message_content(const ordered_json& message,
                                                     const std::string& where, bool assistant) {
  const std::string param = where + ".content";
  auto it = message.find("content");
  if (it == message.end() || it->is_null()) {
    if (assistant) return ordered_json(nullptr);  // a turn of tool calls only
    return invalid_request(param, "'" + param + "' is required", "missing_required");
  }
  if (it->is_string()) return *it;
  if (!it->is_array()) {
    return invalid_request(param, "'" + param + "' must be a string or an array of text parts",
                           "invalid_type");
  }
  std::string text;
  for (size_t idx = 0; idx < it->size(); ++idx) {
    const ordered_json& part = (*it)[idx];
    const std::string part_param = param + "[" + std::to_string(idx) + "]";
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) {
      return invalid_request(part_param, "'" + part_param + "' must be an object with a 'type'",
                             "invalid_type");
    }
    const std::string& type = part["type"].get_ref<const std::string&>();
    if (type != "text") {
      return invalid_request(part_param,
                             "content parts of type '" + type +
                                 "' are not supported: this model takes text parts only",
                             "unsupported_value");
    }
    if (!part.contains("text") || !part["text"].is_string()) {
      return invalid_request(part_param, "'" + part_param + ".text' must be a string",
                             "invalid_type");
    }
    if (idx > 0) text += "\n";
    text += part["text"].get_ref<const std::string&>();
  }
  return ordered_json(text);
}

}  // namespace

std::variant<jinja::ChatTemplateInputs, ApiError> chat_template_inputs(const ordered_json& body) {
  jinja::ChatTemplateInputs inputs;
  const ordered_json* messages = field(body, "messages");
  if (messages == nullptr) {
    return invalid_request("messages", "'messages' is required", "missing_required");
  }
  if (!messages->is_array()) {
    return invalid_request("messages", "'messages' must be an array of messages", "invalid_type");
  }
  if (messages->empty()) return invalid_request("messages", "'messages' must not be empty");
  for (size_t idx = 0; idx < messages->size(); ++idx) {
    const ordered_json& message = (*messages)[idx];
    const std::string where = "messages[" + std::to_string(idx) + "]";
    if (!message.is_object()) {
      return invalid_request(where, "'" + where + "' must be an object", "invalid_type");
    }
    auto role = message.find("role");
    if (role == message.end() || !role->is_string()) {
      return invalid_request(where + ".role", "'" + where + ".role' must be a string",
                             "invalid_type");
    }
    const std::string& role_name = role->get_ref<const std::string&>();
    if (std::find(kRoles.begin(), kRoles.end(), role_name) == kRoles.end()) {
      return invalid_request(where + ".role",
                             "unknown role '" + role_name + "' in '" + where +
                                 ".role': use system, developer, user, assistant or tool");
    }
    auto content = message_content(message, where, role_name == "assistant");
    if (auto* e = std::get_if<ApiError>(&content)) return *e;
    ordered_json rendered = message;
    rendered["content"] = std::move(std::get<ordered_json>(content));
    inputs.messages.push_back(std::move(rendered));
  }
  if (const ordered_json* tools = field(body, "tools")) {
    if (!tools->is_array()) {
      return invalid_request("tools", "'tools' must be an array of tools", "invalid_type");
    }
    for (const ordered_json& tool : *tools) {
      if (!tool.is_object()) {
        return invalid_request("tools", "'tools' must be an array of objects", "invalid_type");
      }
    }
    inputs.tools = *tools;
  }
  if (const ordered_json* choice = field(body, "tool_choice");
      choice != nullptr && !(choice->is_string() && (*choice == "none" || *choice == "auto"))) {
    return invalid_request("tool_choice",
                           "'tool_choice' must be \"none\" or \"auto\": a forced tool call is not "
                           "supported (tool calls come back as the model writes them, in content)",
                           "unsupported_value");
  }
  inputs.add_generation_prompt = true;
  if (const ordered_json* v = field(body, "add_generation_prompt")) {
    if (!v->is_boolean()) {
      return invalid_request("add_generation_prompt",
                             "'add_generation_prompt' must be true or false", "invalid_type");
    }
    inputs.add_generation_prompt = v->get<bool>();
  }
  if (const ordered_json* v = field(body, "continue_final_message");
      v != nullptr && !(v->is_boolean() && !v->get<bool>())) {
    return invalid_request("continue_final_message", "'continue_final_message' is not supported",
                           "unsupported_value");
  }
  if (field(body, "chat_template") != nullptr) {
    return invalid_request("chat_template",
                           "'chat_template' is not supported: the checkpoint's template is used",
                           "unsupported_value");
  }
  if (const ordered_json* kwargs = field(body, "chat_template_kwargs")) {
    if (!kwargs->is_object()) {
      return invalid_request("chat_template_kwargs", "'chat_template_kwargs' must be an object",
                             "invalid_type");
    }
    inputs.template_kwargs = *kwargs;
  }
  if (const ordered_json* documents = field(body, "documents")) {
    if (!documents->is_array()) {
      return invalid_request("documents", "'documents' must be an array", "invalid_type");
    }
    inputs.documents = *documents;
  }
  return inputs;
}

std::variant<ParsedCompletion, ApiError> parse_chat_request(std::string_view body_text,
                                                            const ModelInfo& model) {
  auto body_or = parse_json_body(body_text);
  if (auto* e = std::get_if<ApiError>(&body_or)) return *e;
  const ordered_json& body = std::get<ordered_json>(body_or);
  if (auto e = check_model(body, model)) return *e;
  if (!model.chat_template) {
    return invalid_request("messages",
                           "model '" + model.name +
                               "' has no chat template (no chat_template in its "
                               "tokenizer_config.json): use /v1/completions",
                           "chat_template_unavailable");
  }
  auto inputs = chat_template_inputs(body);
  if (auto* e = std::get_if<ApiError>(&inputs)) return *e;
  auto prompt = model.chat_template->render(std::get<jinja::ChatTemplateInputs>(inputs));
  if (!prompt.is_ok()) {
    return invalid_request("messages",
                           "the chat template refused these messages: " + prompt.status().message(),
                           "chat_template_error");
  }

  ParsedCompletion parsed;
  parsed.reply.kind = ApiKind::kChat;
  auto ids = encode_text(model, *prompt, /*add_special_tokens=*/false);
  if (!ids.is_ok()) return invalid_request("messages", ids.status().message());
  parsed.request.prompt_ids = std::move(ids).value();
  if (parsed.request.prompt_ids.empty()) {
    return invalid_request("messages", "the chat template rendered an empty prompt");
  }
  for (int32_t id : parsed.request.prompt_ids) {
    if (id >= model.vocab_size) {
      return invalid_request("messages", "the tokenizer gave token id " + std::to_string(id) +
                                             ", outside the model's vocabulary [0, " +
                                             std::to_string(model.vocab_size) + ")");
    }
  }
  if (auto e = check_prompt_length(parsed.request.prompt_ids.size(), model)) {
    e->param = "messages";
    return *e;
  }
  if (auto e = parse_shared_fields(body, model, parsed)) return *e;
  return parsed;
}

}  // namespace eep::coordinator
