// Text that came from a socket, made safe to echo in a reply or to write in a log line.
// JSON output (nlohmann) refuses invalid UTF-8 by throwing, and a log line with raw control bytes
// can forge lines of its own; so whatever a peer sent is passed through printable() before it is
// quoted anywhere. Any thread may call these.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace eep {

// Whether `bytes` is well-formed UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF).
bool is_valid_utf8(std::string_view bytes);

// `bytes` as valid, printable UTF-8 of at most about `max_bytes` bytes: well-formed characters at
// or above U+0020 are kept (except DEL), every other byte is written as \xNN, a backslash as \\;
// when the result would pass `max_bytes` it is cut at a character boundary and "..." appended.
std::string printable(std::string_view bytes, size_t max_bytes = 64);

}  // namespace eep
