// What templates call besides filters: Jinja's tests (`x is name`), the global functions (range,
// dict, namespace, and the ones a caller adds such as raise_exception), and the methods of
// strings, dicts and lists that chat templates call (`content.split('</think>')`,
// `message.get('x')`, `d.items()`). Methods that mutate (list.append, dict.update) are refused
// as Hugging Face's ImmutableSandboxedEnvironment refuses them.
#pragma once

#include <string_view>

#include "eep/common/status.h"
#include "eep/coordinator/jinja/value.h"

namespace eep::coordinator::jinja {

using TestFunction = Result<bool> (*)(Interpreter& interpreter, const Value& input, CallArgs& args);

// nullptr when the name is not a supported test.
TestFunction find_test(std::string_view name);

// range, dict, namespace (and the loop-independent helpers) into `globals`.
void add_builtin_globals(ValueDict& globals);

// Whether `self.name` is a method this engine implements for self's kind.
bool has_method(const Value& self, std::string_view name);

// Calls self.name(args); the caller checked has_method.
Result<Value> call_method(Interpreter& interpreter, const Value& self, std::string_view name,
                          CallArgs& args);

}  // namespace eep::coordinator::jinja
