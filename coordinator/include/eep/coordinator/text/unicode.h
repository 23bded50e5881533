// What the tokenizer asks of Unicode, through ICU (the one file that includes it):
// tokenizer.json's "normalizer" (the normalization forms NFC, NFD, NFKC, NFKD and a Sequence of
// them; Qwen3's files ask for NFC; other types such as Lowercase, Replace or BertNormalizer are
// refused at load, naming the type), and the character classes that added tokens' single_word,
// lstrip and rstrip test (as Rust's regex crate defines \w and \s). Immutable after load; any
// thread may call these.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "eep/common/status.h"

namespace eep::coordinator::text {

enum class NormalForm { kNfc, kNfd, kNfkc, kNfkd };

class UnicodeNormalizer {
 public:
  // The identity (tokenizer.json's "normalizer": null).
  UnicodeNormalizer() = default;
  // kInvalidArgument naming `where` and the type for what it does not support.
  static Result<UnicodeNormalizer> from_json(const nlohmann::json& normalizer,
                                             const std::string& where);

  bool is_identity() const { return forms_.empty(); }
  // `text` (valid UTF-8) in each form in turn; kInternal if ICU fails (it does not on valid input).
  Result<std::string> apply(std::string_view text) const;

 private:
  std::vector<NormalForm> forms_;
};

// Rust regex's \w: Alphabetic, a mark, a decimal digit, a connector punctuation or a join control.
bool is_word_char(char32_t c);
// The White_Space property (Rust regex's \s).
bool is_white_space(char32_t c);

}  // namespace eep::coordinator::text
