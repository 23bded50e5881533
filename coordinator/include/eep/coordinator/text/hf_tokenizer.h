// A checkpoint's own tokenizer: Hugging Face's tokenizer.json for byte-level BPE (Qwen3's and
// the like), with tokenizer_config.json and generation_config.json beside it. encode() runs the
// stages of Hugging Face's Tokenizer::encode: added tokens found in the raw text, the normalizer
// (NFC for Qwen3) on the rest, added tokens with normalized true, the pre-tokenizer's regex
// split, BPE per piece, the post-processor. decode() runs its ByteLevel decoder: the tokens' bytes
// joined, each invalid UTF-8 sequence replaced with U+FFFD (Rust's from_utf8_lossy, which
// `tokenizers` calls). What the loader supports and refuses: docs/tokenizer.md.
//
// Thread safety: immutable after load (the BPE cache and the regex scratch inside lock
// themselves), so HTTP threads may encode and decode at once on one shared instance.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "eep/common/status.h"
#include "eep/coordinator/text/added_tokens.h"
#include "eep/coordinator/text/bpe.h"
#include "eep/coordinator/text/post_processor.h"
#include "eep/coordinator/text/pretokenizer.h"
#include "eep/coordinator/text/tokenizer_config.h"
#include "eep/coordinator/text/unicode.h"

namespace eep::coordinator::text {

class HfTokenizer {
 public:
  // Loads `dir`/tokenizer.json and, when present, tokenizer_config.json, chat_template.jinja and
  // generation_config.json. kNotFound when `dir` has no tokenizer.json (a checkpoint without a
  // tokenizer: serve token ids only); kInvalidArgument naming the file and field for a malformed
  // or unsupported one; kIoError when a file cannot be read.
  static Result<HfTokenizer> load(const std::filesystem::path& dir);
  // From the text of a tokenizer.json alone (`where` names it in errors): no config files.
  static Result<HfTokenizer> from_json(std::string_view tokenizer_json, const std::string& where);

  HfTokenizer(HfTokenizer&&) noexcept;
  HfTokenizer& operator=(HfTokenizer&&) noexcept;
  ~HfTokenizer();

  // The ids of `text`; invalid UTF-8 is first replaced with U+FFFD (sanitize_utf8), as a JSON
  // string would carry it. add_special_tokens: the post-processor's tokens around the text (none
  // for Qwen3). kInternal only if PCRE2 or ICU fail on valid input.
  Result<std::vector<int32_t>> encode(std::string_view text, bool add_special_tokens = true) const;
  // Valid UTF-8; ids outside the vocabulary decode to nothing, as in Hugging Face's decode.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = true) const;
  // Appends the raw bytes that `id` decodes to (none for an unknown id, or a special token when
  // skip_special_tokens): decode() is sanitize_utf8 of these bytes over all ids, which is what
  // lets IncrementalDetokenizer stream it.
  void append_token_bytes(int32_t id, bool skip_special_tokens, std::string& bytes) const;

  // One more than the largest id, added tokens included: the ids a model's embedding must hold.
  int32_t vocab_size() const { return static_cast<int32_t>(token_bytes_.size()); }
  // The id of a token as the vocabulary spells it (added tokens by their content).
  std::optional<int32_t> id_of(std::string_view token) const;
  // The vocabulary's spelling of `id` (byte-alphabet form; an added token's content).
  std::optional<std::string> token_of(int32_t id) const;
  // Whether `id` is an added token marked special (skipped by decode with skip_special_tokens).
  bool is_special(int32_t id) const;

  const TokenizerConfig& config() const { return config_; }
  const GenerationConfig& generation_config() const { return generation_config_; }
  // The ids that end a generation: generation_config.json's eos_token_id, else the id of
  // tokenizer_config.json's eos_token; may be empty.
  std::vector<int32_t> eos_token_ids() const;

 private:
  HfTokenizer(BpeModel model);
  // The ids of text between raw-matched added tokens.
  Status encode_segment(std::string_view segment, std::vector<int32_t>& ids) const;

  BpeModel model_;
  UnicodeNormalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  PostProcessor post_processor_;
  std::vector<AddedToken> added_tokens_;
  std::unordered_map<int32_t, size_t> added_token_idx_;  // id -> index into added_tokens_
  AddedTokenMatcher raw_matcher_;         // normalized false: matched in the raw text
  AddedTokenMatcher normalized_matcher_;  // normalized true: matched after the normalizer
  std::vector<std::string> token_bytes_;  // by id: what the decoder makes of it
  std::vector<bool> is_special_;          // by id
  TokenizerConfig config_;
  GenerationConfig generation_config_;
};

}  // namespace eep::coordinator::text
