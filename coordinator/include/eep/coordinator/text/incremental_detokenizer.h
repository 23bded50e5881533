// One request's streaming decoder: the text of generated ids, piece by piece, such that the
// pieces joined are exactly HfTokenizer::decode of all the ids. Byte-level buffering: each id's
// bytes are appended, and only whole UTF-8 characters come out, so a character split across
// tokens comes out whole with its last byte; a byte that can never become valid comes out as
// U+FFFD at once, as decode would write it. Belongs to one request (one thread at a time); the
// tokenizer must outlive it.
#pragma once

#include <cstdint>
#include <string>

#include "eep/coordinator/text/hf_tokenizer.h"

namespace eep::coordinator::text {

class IncrementalDetokenizer {
 public:
  explicit IncrementalDetokenizer(const HfTokenizer& tokenizer, bool skip_special_tokens = true)
      : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

  // The text that `id` completes: valid UTF-8, possibly empty (a character still incomplete, a
  // skipped special token).
  std::string push(int32_t id);
  // The rest at the end of the request: an incomplete trailing character becomes U+FFFD.
  std::string finish();

 private:
  const HfTokenizer& tokenizer_;
  bool skip_special_tokens_;
  std::string pending_;  // the first bytes of an incomplete character
};

}  // namespace eep::coordinator::text
