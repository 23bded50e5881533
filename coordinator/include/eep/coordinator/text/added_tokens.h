// Added tokens (tokenizer.json's "added_tokens": the special tokens such as <|im_start|> and the
// others such as <think>), found in the text before the BPE model sees it, as Hugging Face's
// AddedVocabulary does: leftmost match first, the longest of those starting there; single_word
// drops a match touching a word character (\w) on either side; lstrip and rstrip widen a match
// over the white space beside it. Tokens with normalized false match the raw text, the others the
// normalized text (two matchers). Immutable after construction; any thread may call split().
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "eep/common/status.h"

namespace eep::coordinator::text {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

// tokenizer.json's "added_tokens" (null or absent: none); kInvalidArgument naming `where` and the
// entry for a missing id or content, an empty content, or an id given twice.
Result<std::vector<AddedToken>> parse_added_tokens(const nlohmann::json& added_tokens,
                                                   const std::string& where);

// A stretch of text: an added token (token_id >= 0, `text` what it covered, stripped white
// space included) or text for the model (token_id < 0).
struct TextSegment {
  std::string_view text;
  int32_t token_id = -1;
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // Matches these tokens' `content`s (already normalized when they match normalized text).
  explicit AddedTokenMatcher(std::vector<AddedToken> tokens);

  bool empty() const { return tokens_.empty(); }
  // Appends segments that cover `text` (valid UTF-8) in order; empty text gives none.
  void split(std::string_view text, std::vector<TextSegment>& segments) const;

 private:
  // The longest token starting at text[pos], or nullptr.
  const AddedToken* longest_at(std::string_view text, size_t pos) const;

  std::vector<AddedToken> tokens_;                        // longest content first
  std::array<std::vector<uint16_t>, 256> by_first_byte_;  // indices into tokens_, longest first
};

}  // namespace eep::coordinator::text
