// The served model's text: which tokenizer turns its prompts into ids and its ids back into text
// (the checkpoint's own tokenizer.json, the byte tokenizer of generated models, or none: token
// ids only), and its chat template. Loaded once at start from the model directory; shared,
// immutable, by every HTTP thread through ModelInfo (serving.h). Docs: docs/http_api.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "eep/common/status.h"
#include "eep/coordinator/jinja/chat_template.h"
#include "eep/coordinator/serving.h"
#include "eep/coordinator/text/hf_tokenizer.h"
#include "eep/coordinator/text/incremental_detokenizer.h"
#include "eep/coordinator/tokenizer.h"

namespace eep::coordinator {

struct ModelText {
  std::shared_ptr<const text::HfTokenizer> tokenizer;        // null: the checkpoint has none
  std::shared_ptr<const jinja::ChatTemplate> chat_template;  // null: no chat_template
};

// Reads `model_dir`'s tokenizer.json (with tokenizer_config.json, chat_template.jinja and
// generation_config.json beside it) and its chat template. A directory without tokenizer.json
// gives an empty ModelText (generated models: the byte tokenizer, or token ids only). A
// malformed tokenizer or chat template is kInvalidArgument naming the file and the field; an
// unreadable file kIoError.
Result<ModelText> load_model_text(const std::filesystem::path& model_dir);

enum class TokenizerKind { kHf, kByte, kNone };
TokenizerKind tokenizer_kind(const ModelInfo& model);
// "hf", "byte", "none": what /v1/models and the log say.
std::string_view to_string(TokenizerKind kind);

// The ids of a prompt's text: the checkpoint's tokenizer (add_special_tokens: its
// post-processor's tokens, none for a rendered chat prompt, which has them already) or the byte
// tokenizer. kFailedPrecondition when the model has no tokenizer; kInvalidArgument when the
// byte tokenizer does not fit the vocabulary.
Result<std::vector<int32_t>> encode_text(const ModelInfo& model, std::string_view text,
                                         bool add_special_tokens);
// The text of ids, as Hugging Face's decode writes it (valid UTF-8); "" without a tokenizer.
std::string decode_ids(const ModelInfo& model, std::span<const int32_t> ids,
                       bool skip_special_tokens);
// What one token spells, byte for byte (special tokens included): for logprobs. Empty for an id
// that carries no text.
std::string token_bytes(const ModelInfo& model, int32_t id);

// One choice's generated text, token by token: pieces that join to decode_ids of all the ids.
class TextStream {
 public:
  TextStream(const ModelInfo& model, bool skip_special_tokens);
  std::string push(int32_t id);
  std::string finish();

 private:
  std::shared_ptr<const text::HfTokenizer> tokenizer_;  // keeps the detokenizer's reference
  std::variant<std::monostate, Utf8StreamDecoder, text::IncrementalDetokenizer> decoder_;
};

}  // namespace eep::coordinator
