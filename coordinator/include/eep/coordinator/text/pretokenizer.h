// tokenizer.json's "pre_tokenizer" for byte-level BPE: zero or more Split stages, each a regex
// whose matches (and the text between them) become the pieces, then ByteLevel with
// use_regex false and add_prefix_space false, which only respells each piece in the byte
// alphabet (the BPE model does that itself, see bpe.h). Qwen3: Sequence[Split(Regex, Isolated),
// ByteLevel]. The regexes run in PCRE2 (UTF, UCP, JIT), the one file that includes it.
// Everything else (other types, behaviors, invert, ByteLevel's own GPT-2 regex or prefix space) is
// refused at load, naming it. Immutable after load; any thread may call split().
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "eep/common/status.h"

namespace eep::coordinator::text {

// One compiled regex with a pool of match scratch (match data, JIT stack), so that threads can
// match at once without allocating on every call.
class SplitRegex {
 public:
  // kInvalidArgument with PCRE2's message and offset when the pattern does not compile;
  // `literal`: the pattern is a plain string to find.
  static Result<std::unique_ptr<SplitRegex>> compile(std::string_view pattern,
                                                     bool literal = false);
  ~SplitRegex();
  SplitRegex(const SplitRegex&) = delete;
  SplitRegex& operator=(const SplitRegex&) = delete;

  // Appends to `pieces` the matches in `text` (valid UTF-8) and the non-empty text between
  // them, in order (the "Isolated" behavior); empty matches are skipped. kInternal when PCRE2
  // gives up (a match or JIT stack limit).
  Status split(std::string_view text, std::vector<std::string_view>& pieces) const;

 private:
  struct Scratch;
  struct Impl;
  explicit SplitRegex(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class PreTokenizer {
 public:
  // kInvalidArgument naming `where` and what is not supported or does not compile.
  static Result<PreTokenizer> from_json(const nlohmann::json& pre_tokenizer,
                                        const std::string& where);

  // The pieces of `text` (valid UTF-8) after every Split stage, as views into `text`.
  Status split(std::string_view text, std::vector<std::string_view>& pieces) const;

 private:
  std::vector<std::shared_ptr<const SplitRegex>> stages_;
};

}  // namespace eep::coordinator::text
