// Jinja's filters (`x | name(args)`) that chat templates use: text (trim, upper, lower, title,
// capitalize, replace, indent, center, wordcount, string, escape), sequences (length, first, last,
// join, list, reverse, sort, unique, sum, min, max, batch, slice via items), selection (map,
// select, reject, selectattr, rejectattr, dictsort, items), numbers (int, float, abs, round),
// default, tojson (Hugging Face's: json.dumps with ensure_ascii=False, indent, separators,
// sort_keys) and safe. The parser refuses any other name.
#pragma once

#include <string_view>

#include "eep/common/status.h"
#include "eep/coordinator/jinja/value.h"

namespace eep::coordinator::jinja {

// `input | filter(args...)`; errors say what was wrong without a location (the interpreter adds
// it).
using FilterFunction = Result<Value> (*)(Interpreter& interpreter, const Value& input,
                                         CallArgs& args);

// nullptr when the name is not a supported filter.
FilterFunction find_filter(std::string_view name);

}  // namespace eep::coordinator::jinja
