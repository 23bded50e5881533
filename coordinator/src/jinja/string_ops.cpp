#include "string_ops.h"

#include "eep/coordinator/jinja/interpreter.h"
#include "text_util.h"

namespace eep::coordinator::jinja {

namespace {

bool is_lower(char c) {
  return c >= 'a' && c <= 'z';
}
bool is_upper(char c) {
  return c >= 'A' && c <= 'Z';
}
char to_upper(char c) {
  return is_lower(c) ? static_cast<char>(c - 'a' + 'A') : c;
}
char to_lower(char c) {
  return is_upper(c) ? static_cast<char>(c - 'A' + 'a') : c;
}

}  // namespace

std::string ascii_upper(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = to_upper(c);
  return out;
}

std::string ascii_lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = to_lower(c);
  return out;
}

std::string python_title(std::string_view text) {
  std::string out(text);
  bool previous_cased = false;
  for (char& c : out) {
    bool cased = is_lower(c) || is_upper(c);
    if (cased) c = previous_cased ? to_lower(c) : to_upper(c);
    previous_cased = cased;
  }
  return out;
}

std::string python_capitalize(std::string_view text) {
  std::string out = ascii_lower(text);
  if (!out.empty()) out[0] = to_upper(out[0]);
  return out;
}

std::vector<std::string> python_split(std::string_view text, const std::optional<std::string>& sep,
                                      int64_t maxsplit, bool from_right) {
  std::vector<std::string> parts;
  if (sep) {
    if (!from_right) {
      size_t start = 0;
      while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
        size_t at = text.find(*sep, start);
        if (at == std::string_view::npos) break;
        parts.emplace_back(text.substr(start, at - start));
        start = at + sep->size();
      }
      parts.emplace_back(text.substr(start));
      return parts;
    }
    size_t end = text.size();
    while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
      if (end < sep->size()) break;
      size_t at = text.rfind(*sep, end - sep->size());
      if (at == std::string_view::npos) break;
      parts.emplace_back(text.substr(at + sep->size(), end - at - sep->size()));
      end = at;
    }
    parts.emplace_back(text.substr(0, end));
    return {parts.rbegin(), parts.rend()};
  }
  // Whitespace: runs of it separate, none at the ends; maxsplit leaves the rest as it is
  // (less leading whitespace).
  std::u32string codes = decode_utf8(text);
  if (!from_right) {
    size_t i = 0;
    while (true) {
      while (i < codes.size() && is_python_space(codes[i])) ++i;
      if (i >= codes.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) >= maxsplit) {
        size_t end = codes.size();
        while (end > i && is_python_space(codes[end - 1])) --end;
        parts.push_back(encode_utf8(std::u32string_view(codes).substr(i, end - i)));
        break;
      }
      size_t start = i;
      while (i < codes.size() && !is_python_space(codes[i])) ++i;
      parts.push_back(encode_utf8(std::u32string_view(codes).substr(start, i - start)));
    }
    return parts;
  }
  size_t i = codes.size();
  while (true) {
    while (i > 0 && is_python_space(codes[i - 1])) --i;
    if (i == 0) break;
    if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) >= maxsplit) {
      size_t begin = 0;
      while (begin < i && is_python_space(codes[begin])) ++begin;
      parts.push_back(encode_utf8(std::u32string_view(codes).substr(begin, i - begin)));
      break;
    }
    size_t end = i;
    while (i > 0 && !is_python_space(codes[i - 1])) --i;
    parts.push_back(encode_utf8(std::u32string_view(codes).substr(i, end - i)));
  }
  return {parts.rbegin(), parts.rend()};
}

std::vector<std::string> python_splitlines(std::string_view text) {
  std::vector<std::string> lines;
  std::u32string codes = decode_utf8(text);
  std::u32string current;
  for (size_t i = 0; i < codes.size(); ++i) {
    char32_t c = codes[i];
    bool boundary = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D ||
                    c == 0x1E || c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!boundary) {
      current.push_back(c);
      continue;
    }
    if (c == '\r' && i + 1 < codes.size() && codes[i + 1] == '\n') ++i;
    lines.push_back(encode_utf8(current));
    current.clear();
  }
  if (!current.empty()) lines.push_back(encode_utf8(current));
  return lines;
}

Result<std::string> python_replace(Interpreter& interpreter, const std::string& text,
                                   const std::string& old_text, const std::string& new_text,
                                   int64_t count) {
  if (old_text.empty()) {
    // Python inserts `new` before each character and at the end (up to count times).
    std::u32string codes = decode_utf8(text);
    uint64_t num_inserts = codes.size() + 1;
    if (count >= 0) num_inserts = std::min<uint64_t>(num_inserts, static_cast<uint64_t>(count));
    EEP_RETURN_IF_ERROR(interpreter.charge_bytes(text.size() + num_inserts * new_text.size()));
    std::string out;
    uint64_t inserted = 0;
    for (char32_t code : codes) {
      if (inserted < num_inserts) {
        out += new_text;
        ++inserted;
      }
      append_utf8(out, code);
    }
    if (inserted < num_inserts) out += new_text;
    return out;
  }
  uint64_t num_matches = 0;
  for (size_t at = text.find(old_text);
       at != std::string::npos && (count < 0 || num_matches < static_cast<uint64_t>(count));
       at = text.find(old_text, at + old_text.size())) {
    ++num_matches;
  }
  uint64_t size = text.size() - num_matches * old_text.size() + num_matches * new_text.size();
  EEP_RETURN_IF_ERROR(interpreter.charge_bytes(size));
  std::string out;
  out.reserve(size);
  size_t start = 0;
  for (uint64_t i = 0; i < num_matches; ++i) {
    size_t at = text.find(old_text, start);
    out.append(text, start, at - start);
    out += new_text;
    start = at + old_text.size();
  }
  out.append(text, start, std::string::npos);
  return out;
}

}  // namespace eep::coordinator::jinja
