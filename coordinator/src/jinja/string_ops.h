// Python's str methods that chat templates call, on UTF-8 strings. Case mapping is ASCII-only
// (upper/lower/title/capitalize leave other letters as they are): chat templates change the case
// of role names and keywords, not of user text.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "eep/common/status.h"

namespace eep::coordinator::jinja {

class Interpreter;

std::string ascii_upper(std::string_view text);
std::string ascii_lower(std::string_view text);
std::string python_title(std::string_view text);
std::string python_capitalize(std::string_view text);
// str.split(sep, maxsplit) / str.rsplit: sep nullopt splits on runs of whitespace.
std::vector<std::string> python_split(std::string_view text, const std::optional<std::string>& sep,
                                      int64_t maxsplit, bool from_right);
// str.splitlines() (no keepends): \n, \r, \r\n, \v, \f, \x1c-\x1e, \x85, U+2028, U+2029.
std::vector<std::string> python_splitlines(std::string_view text);
// str.replace(old, new, count); the result's size is charged before it is built.
Result<std::string> python_replace(Interpreter& interpreter, const std::string& text,
                                   const std::string& old_text, const std::string& new_text,
                                   int64_t count);

}  // namespace eep::coordinator::jinja
