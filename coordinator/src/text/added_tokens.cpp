#include "eep/coordinator/text/added_tokens.h"

#include <algorithm>
#include <set>

#include "eep/coordinator/text/unicode.h"

namespace eep::coordinator::text {
namespace {

// The code point that starts at text[pos] and its length (text is valid UTF-8).
std::pair<char32_t, size_t> decode_at(std::string_view text, size_t pos) {
  auto byte = [&](size_t idx) { return static_cast<unsigned char>(text[idx]); };
  unsigned char lead = byte(pos);
  if (lead < 0x80) return {lead, 1};
  if (lead < 0xE0) return {((lead & 0x1F) << 6) | (byte(pos + 1) & 0x3F), 2};
  if (lead < 0xF0) {
    return {((lead & 0x0F) << 12) | ((byte(pos + 1) & 0x3F) << 6) | (byte(pos + 2) & 0x3F), 3};
  }
  return {((lead & 0x07) << 18) | ((byte(pos + 1) & 0x3F) << 12) | ((byte(pos + 2) & 0x3F) << 6) |
              (byte(pos + 3) & 0x3F),
          4};
}

// Where the code point that ends at text[end] starts.
size_t start_before(std::string_view text, size_t end) {
  size_t pos = end - 1;
  while (pos > 0 && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) --pos;
  return pos;
}

bool word_char_before(std::string_view text, size_t pos) {
  return pos > 0 && is_word_char(decode_at(text, start_before(text, pos)).first);
}

bool word_char_at(std::string_view text, size_t pos) {
  return pos < text.size() && is_word_char(decode_at(text, pos).first);
}

}  // namespace

Result<std::vector<AddedToken>> parse_added_tokens(const nlohmann::json& added_tokens,
                                                   const std::string& where) {
  std::vector<AddedToken> tokens;
  if (added_tokens.is_null()) return tokens;
  if (!added_tokens.is_array()) {
    return error(ErrorCode::kInvalidArgument, where + ": added_tokens is not an array");
  }
  std::set<int32_t> ids;
  for (size_t idx = 0; idx < added_tokens.size(); ++idx) {
    const nlohmann::json& entry = added_tokens[idx];
    std::string label = where + ": added_tokens[" + std::to_string(idx) + "]";
    if (!entry.is_object() || !entry.contains("id") || !entry["id"].is_number_integer() ||
        entry["id"].get<int64_t>() < 0 || entry["id"].get<int64_t>() >= INT32_MAX) {
      return error(ErrorCode::kInvalidArgument, label + " has no \"id\" in [0, 2^31)");
    }
    if (!entry.contains("content") || !entry["content"].is_string() ||
        entry["content"].get_ref<const std::string&>().empty()) {
      return error(ErrorCode::kInvalidArgument, label + " has no non-empty string \"content\"");
    }
    AddedToken token;
    token.id = static_cast<int32_t>(entry["id"].get<int64_t>());
    token.content = entry["content"];
    auto flag = [&](const char* name, bool fallback) {
      return entry.contains(name) && entry[name].is_boolean() ? entry[name].get<bool>() : fallback;
    };
    token.single_word = flag("single_word", false);
    token.lstrip = flag("lstrip", false);
    token.rstrip = flag("rstrip", false);
    token.special = flag("special", false);
    token.normalized = flag("normalized", !token.special);
    if (!ids.insert(token.id).second) {
      return error(ErrorCode::kInvalidArgument,
                   label + " gives the id " + std::to_string(token.id) + " a second time");
    }
    tokens.push_back(std::move(token));
  }
  return tokens;
}

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  // Longest first; among equal lengths the earlier entry (aho-corasick's pattern order).
  std::stable_sort(tokens_.begin(), tokens_.end(), [](const AddedToken& a, const AddedToken& b) {
    return a.content.size() > b.content.size();
  });
  EEP_CHECK(tokens_.size() <= UINT16_MAX);
  for (size_t idx = 0; idx < tokens_.size(); ++idx) {
    by_first_byte_[static_cast<uint8_t>(tokens_[idx].content[0])].push_back(
        static_cast<uint16_t>(idx));
  }
}

const AddedToken* AddedTokenMatcher::longest_at(std::string_view text, size_t pos) const {
  for (uint16_t idx : by_first_byte_[static_cast<uint8_t>(text[pos])]) {
    if (text.substr(pos).starts_with(tokens_[idx].content)) return &tokens_[idx];
  }
  return nullptr;
}

void AddedTokenMatcher::split(std::string_view text, std::vector<TextSegment>& segments) const {
  size_t text_start = 0;  // where the text not yet in a segment starts
  size_t pos = 0;         // where the search goes on
  while (pos < text.size()) {
    const AddedToken* token = nullptr;
    for (; pos < text.size(); ++pos) {
      if (!by_first_byte_[static_cast<uint8_t>(text[pos])].empty() &&
          (token = longest_at(text, pos)) != nullptr) {
        break;
      }
    }
    if (token == nullptr) break;
    size_t start = pos;
    size_t stop = pos + token->content.size();
    if (token->single_word && (word_char_before(text, start) || word_char_at(text, stop))) {
      pos = stop;  // aho-corasick's search goes on after the dropped match
      continue;
    }
    if (token->lstrip) {
      while (start > text_start) {
        size_t before = start_before(text, start);
        if (!is_white_space(decode_at(text, before).first)) break;
        start = before;
      }
    }
    if (token->rstrip) {
      while (stop < text.size()) {
        auto [c, num_bytes] = decode_at(text, stop);
        if (!is_white_space(c)) break;
        stop += num_bytes;
      }
    }
    if (start > text_start) segments.push_back({text.substr(text_start, start - text_start)});
    segments.push_back({text.substr(start, stop - start), token->id});
    text_start = stop;
    pos = stop;
  }
  if (text_start < text.size()) segments.push_back({text.substr(text_start)});
}

}  // namespace eep::coordinator::text
