// The public API of the Jinja engine: parse once, render many times (from any thread: a parsed
// Template is immutable). Nothing here throws: every failure is a Status naming the template line
// and column and the construct (syntax error, unsupported filter, undefined value, a limit).
//
//   EEP_ASSIGN_OR_RETURN(auto tmpl, Template::parse(source));
//   EEP_ASSIGN_OR_RETURN(std::string text, tmpl.render({{"messages", messages}}));
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "eep/common/status.h"
#include "eep/coordinator/jinja/interpreter.h"
#include "eep/coordinator/jinja/lexer.h"
#include "eep/coordinator/jinja/value.h"

namespace eep::coordinator::jinja {

struct TemplateOptions {
  LexerOptions lexer;  // trim_blocks and lstrip_blocks on, as Hugging Face renders
  RenderLimits limits;
  // Longest template source accepted: a chat template is a few KB.
  size_t max_source_bytes = size_t{1} << 20;
};

class Template {
 public:
  // kInvalidArgument for a syntax error or an unsupported construct, with its line and column.
  static Result<Template> parse(std::string_view source, const TemplateOptions& options = {});

  // `context` must be a JSON object; its members become the template's variables, beside the
  // globals range, dict and namespace. An ordered_json keeps its members' order (a plain
  // nlohmann::json converts, sorted by name).
  Result<std::string> render(const nlohmann::ordered_json& context) const;
  // The same with more globals (functions such as raise_exception), which the context's
  // variables shadow.
  Result<std::string> render(const ValueDict& variables, const ValueDict& extra_globals) const;

 private:
  struct Parsed;
  explicit Template(std::shared_ptr<const Parsed> parsed) : parsed_(std::move(parsed)) {}
  std::shared_ptr<const Parsed> parsed_;
};

}  // namespace eep::coordinator::jinja
