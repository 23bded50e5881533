// OpenAI's /v1/chat/completions request without sockets: the messages (roles, string content or
// text parts), tools, add_generation_prompt and chat_template_kwargs rendered with the
// checkpoint's chat template (jinja::ChatTemplate), the prompt encoded without adding special
// tokens again (the template wrote them), then the fields completions share (openai_api.h). The
// reply is openai_reply.h's. Pure; docs/http_api.md.
#pragma once

#include <string>
#include <string_view>
#include <variant>

#include <nlohmann/json.hpp>

#include "eep/coordinator/api_error.h"
#include "eep/coordinator/jinja/chat_template.h"
#include "eep/coordinator/openai_api.h"
#include "eep/coordinator/serving.h"

namespace eep::coordinator {

// What the template gets from a chat body: each message checked (a known role; content a string,
// null for an assistant turn, or an array of text parts, joined with "\n" as vLLM joins them),
// its other members (name, tool_calls, tool_call_id, reasoning_content) passed through; tools;
// add_generation_prompt (default true); chat_template_kwargs.
std::variant<jinja::ChatTemplateInputs, ApiError> chat_template_inputs(
    const nlohmann::ordered_json& body);

// Validates a /v1/chat/completions body and renders its prompt. A model without a chat template,
// a bad message or a template that fails (raise_exception included: its message) is a 400.
std::variant<ParsedCompletion, ApiError> parse_chat_request(std::string_view body,
                                                            const ModelInfo& model);

}  // namespace eep::coordinator
