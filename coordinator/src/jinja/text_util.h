// UTF-8 helpers of the Jinja engine: Python's string operations count code points, not bytes
// (len, slicing, strip of unicode whitespace). Strings reaching these are valid UTF-8 (template
// sources are checked at parse, context strings come from nlohmann::json's parser).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace eep::coordinator::jinja {

inline bool is_ascii(std::string_view text) {
  for (unsigned char c : text) {
    if (c >= 0x80) return false;
  }
  return true;
}

// Decodes valid UTF-8; a malformed byte decodes as itself (never reached for checked input).
inline std::u32string decode_utf8(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    auto c = static_cast<unsigned char>(text[i]);
    int num_extra = c < 0xC0 ? 0 : c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
    if (i + num_extra >= text.size()) num_extra = 0;  // truncated: the byte as itself
    char32_t code = num_extra == 0   ? c
                    : num_extra == 1 ? (c & 0x1F)
                    : num_extra == 2 ? (c & 0x0F)
                                     : (c & 0x07);
    for (int k = 1; k <= num_extra; ++k) {
      code = (code << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
    }
    out.push_back(code);
    i += 1 + num_extra;
  }
  return out;
}

inline void append_utf8(std::string& out, char32_t code) {
  if (code < 0x80) {
    out.push_back(static_cast<char>(code));
  } else if (code < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (code >> 6)));
    out.push_back(static_cast<char>(0x80 | (code & 0x3F)));
  } else if (code < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (code >> 12)));
    out.push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (code >> 18)));
    out.push_back(static_cast<char>(0x80 | ((code >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code & 0x3F)));
  }
}

inline std::string encode_utf8(std::u32string_view codes) {
  std::string out;
  out.reserve(codes.size());
  for (char32_t code : codes) append_utf8(out, code);
  return out;
}

// Strict check: no overlongs, no surrogates, nothing above U+10FFFF.
inline bool is_valid_utf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int num_extra;
    char32_t code;
    if (c >= 0xC2 && c <= 0xDF) {
      num_extra = 1;
      code = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      num_extra = 2;
      code = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      num_extra = 3;
      code = c & 0x07;
    } else {
      return false;
    }
    if (i + num_extra >= text.size()) return false;
    for (int k = 1; k <= num_extra; ++k) {
      auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return false;
      code = (code << 6) | (next & 0x3F);
    }
    if ((num_extra == 2 && code < 0x800) || (num_extra == 3 && code < 0x10000) ||
        (code >= 0xD800 && code <= 0xDFFF) || code > 0x10FFFF) {
      return false;
    }
    i += 1 + num_extra;
  }
  return true;
}

inline size_t utf8_length(std::string_view text) {
  size_t count = 0;
  for (unsigned char c : text) count += (c & 0xC0) != 0x80;
  return count;
}

// Python's str.isspace() for one code point (what str.strip() with no argument removes).
inline bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// Python's str.strip/lstrip/rstrip: without `chars` unicode whitespace, else any code point of
// `chars`.
inline std::string python_strip(std::string_view text, const std::u32string* chars, bool left,
                                bool right) {
  std::u32string codes = decode_utf8(text);
  auto strip_it = [&](char32_t c) {
    return chars ? chars->find(c) != std::u32string::npos : is_python_space(c);
  };
  size_t begin = 0;
  size_t end = codes.size();
  if (left) {
    while (begin < end && strip_it(codes[begin])) ++begin;
  }
  if (right) {
    while (end > begin && strip_it(codes[end - 1])) --end;
  }
  return encode_utf8(std::u32string_view(codes).substr(begin, end - begin));
}

}  // namespace eep::coordinator::jinja
