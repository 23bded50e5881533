#include "eep/coordinator/model_text.h"

#include <fstream>
#include <sstream>

namespace eep::coordinator {
namespace fs = std::filesystem;

namespace {

// tokenizer_config.json as a tree for ChatTemplate (its special tokens and named templates);
// the template of chat_template.jinja when the config has none (the tokenizer read it).
Result<std::shared_ptr<const jinja::ChatTemplate>> load_chat_template(
    const fs::path& model_dir, const text::HfTokenizer& tokenizer) {
  const fs::path config_path = model_dir / "tokenizer_config.json";
  nlohmann::json config = nlohmann::json::object();
  std::error_code ec;
  if (fs::exists(config_path, ec)) {
    std::ifstream in(config_path, std::ios::binary);
    std::ostringstream contents;
    contents << in.rdbuf();
    if (!in) return error(ErrorCode::kIoError, "cannot read " + config_path.string());
    // The tokenizer parsed this file already: it is an object.
    config = nlohmann::json::parse(contents.str(), nullptr, /*allow_exceptions=*/false);
  }
  if (!config.is_object()) config = nlohmann::json::object();
  const auto source = config.find("chat_template");
  const bool from_file = source == config.end() || source->is_null();
  if (from_file) {
    if (tokenizer.config().chat_template.empty()) {
      return std::shared_ptr<const jinja::ChatTemplate>();
    }
    config["chat_template"] = tokenizer.config().chat_template;
  }
  auto chat = jinja::ChatTemplate::from_tokenizer_config(config);
  if (!chat.is_ok()) {
    return error(ErrorCode::kInvalidArgument,
                 (from_file ? (model_dir / "chat_template.jinja").string()
                            : config_path.string() + ": chat_template") +
                     ": " + chat.status().message());
  }
  return std::make_shared<const jinja::ChatTemplate>(std::move(chat).value());
}

}  // namespace

Result<ModelText> load_model_text(const fs::path& model_dir) {
  auto tokenizer = text::HfTokenizer::load(model_dir);
  if (!tokenizer.is_ok()) {
    if (tokenizer.status().code() == ErrorCode::kNotFound) return ModelText{};
    return tokenizer.status();
  }
  ModelText model_text;
  auto shared = std::make_shared<const text::HfTokenizer>(std::move(tokenizer).value());
  EEP_ASSIGN_OR_RETURN(model_text.chat_template, load_chat_template(model_dir, *shared));
  model_text.tokenizer = std::move(shared);
  return model_text;
}

TokenizerKind tokenizer_kind(const ModelInfo& model) {
  if (model.tokenizer) return TokenizerKind::kHf;
  return model.byte_tokenizer ? TokenizerKind::kByte : TokenizerKind::kNone;
}

std::string_view to_string(TokenizerKind kind) {
  switch (kind) {
    case TokenizerKind::kHf:
      return "hf";
    case TokenizerKind::kByte:
      return "byte";
    case TokenizerKind::kNone:
      return "none";
  }
  return "none";
}

Result<std::vector<int32_t>> encode_text(const ModelInfo& model, std::string_view text,
                                         bool add_special_tokens) {
  switch (tokenizer_kind(model)) {
    case TokenizerKind::kHf:
      return model.tokenizer->encode(text, add_special_tokens);
    case TokenizerKind::kByte:
      return byte_encode(text, model.vocab_size);
    case TokenizerKind::kNone:
      break;
  }
  return error(ErrorCode::kFailedPrecondition,
               "model '" + model.name +
                   "' has no tokenizer (no tokenizer.json in its checkpoint): send the prompt as "
                   "an array of integer token ids");
}

std::string decode_ids(const ModelInfo& model, std::span<const int32_t> ids,
                       bool skip_special_tokens) {
  switch (tokenizer_kind(model)) {
    case TokenizerKind::kHf:
      return model.tokenizer->decode(ids, skip_special_tokens);
    case TokenizerKind::kByte:
      return sanitize_utf8(byte_decode(ids));
    case TokenizerKind::kNone:
      break;
  }
  return {};
}

std::string token_bytes(const ModelInfo& model, int32_t id) {
  switch (tokenizer_kind(model)) {
    case TokenizerKind::kHf: {
      std::string bytes;
      model.tokenizer->append_token_bytes(id, /*skip_special_tokens=*/false, bytes);
      return bytes;
    }
    case TokenizerKind::kByte:
      return byte_decode(std::span<const int32_t>(&id, 1));
    case TokenizerKind::kNone:
      break;
  }
  return {};
}

TextStream::TextStream(const ModelInfo& model, bool skip_special_tokens)
    : tokenizer_(model.tokenizer) {
  switch (tokenizer_kind(model)) {
    case TokenizerKind::kHf:
      decoder_.emplace<text::IncrementalDetokenizer>(*tokenizer_, skip_special_tokens);
      break;
    case TokenizerKind::kByte:
      decoder_.emplace<Utf8StreamDecoder>();
      break;
    case TokenizerKind::kNone:
      break;
  }
}

std::string TextStream::push(int32_t id) {
  if (auto* hf = std::get_if<text::IncrementalDetokenizer>(&decoder_)) return hf->push(id);
  if (auto* bytes = std::get_if<Utf8StreamDecoder>(&decoder_)) {
    return bytes->push(std::span<const int32_t>(&id, 1));
  }
  return {};
}

std::string TextStream::finish() {
  if (auto* hf = std::get_if<text::IncrementalDetokenizer>(&decoder_)) return hf->finish();
  if (auto* bytes = std::get_if<Utf8StreamDecoder>(&decoder_)) return bytes->finish();
  return {};
}

}  // namespace eep::coordinator
