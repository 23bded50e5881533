#include "eep/coordinator/jinja/template.h"

#include <exception>

#include "eep/coordinator/jinja/builtins.h"
#include "eep/coordinator/jinja/parser.h"

namespace eep::coordinator::jinja {

struct Template::Parsed {
  explicit Parsed(std::string_view source) : source_map(source) {}
  SourceMap source_map;
  Body body;
  RenderLimits limits;
};

Result<Template> Template::parse(std::string_view source, const TemplateOptions& options) {
  if (source.size() > options.max_source_bytes) {
    return error(ErrorCode::kInvalidArgument,
                 "template source of " + std::to_string(source.size()) +
                     " bytes is over the limit of " + std::to_string(options.max_source_bytes));
  }
  try {
    auto parsed = std::make_shared<Parsed>(source);
    parsed->limits = options.limits;
    EEP_ASSIGN_OR_RETURN(std::vector<Token> tokens, tokenize(parsed->source_map, options.lexer));
    EEP_ASSIGN_OR_RETURN(parsed->body, jinja::parse(parsed->source_map, tokens));
    return Template(std::move(parsed));
  } catch (const std::exception& e) {  // allocation failure: never out of the API
    return error(ErrorCode::kResourceExhausted,
                 std::string("parsing the template failed: ") + e.what());
  }
}

Result<std::string> Template::render(const nlohmann::ordered_json& context) const {
  if (!context.is_object()) {
    return error(ErrorCode::kInvalidArgument, "the template context must be a JSON object");
  }
  try {
    Value variables = Value::from_json(context);
    return render(variables.as_dict(), ValueDict{});
  } catch (const std::exception& e) {
    return error(ErrorCode::kResourceExhausted,
                 std::string("rendering the template failed: ") + e.what());
  }
}

Result<std::string> Template::render(const ValueDict& variables,
                                     const ValueDict& extra_globals) const {
  try {
    ValueDict globals;
    add_builtin_globals(globals);
    for (const auto& [name, value] : extra_globals.entries()) globals.set(name, value);
    Interpreter interpreter(parsed_->source_map, parsed_->limits);
    return interpreter.render(parsed_->body, globals, variables);
  } catch (const std::exception& e) {
    return error(ErrorCode::kResourceExhausted,
                 std::string("rendering the template failed: ") + e.what());
  }
}

}  // namespace eep::coordinator::jinja
