#include "eep/coordinator/text/hf_tokenizer.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "eep/common/text.h"
#include "eep/coordinator/text/byte_level.h"
#include "eep/coordinator/text/tokenizer_file.h"
#include "eep/coordinator/tokenizer.h"

namespace eep::coordinator::text {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

Result<std::string> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return error(ErrorCode::kIoError, "cannot open " + path.string());
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return error(ErrorCode::kIoError, "cannot read " + path.string());
  return text.str();
}

Result<json> parse_json(std::string_view text, const std::string& where) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    return error(ErrorCode::kInvalidArgument, where + ": not valid JSON: " + e.what());
  }
}

// An optional file of `dir`: nullopt when it is absent.
Result<std::optional<json>> read_optional_json(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::optional<json>();
  EEP_ASSIGN_OR_RETURN(std::string text, read_file(path));
  EEP_ASSIGN_OR_RETURN(json parsed, parse_json(text, path.string()));
  return std::optional<json>(std::move(parsed));
}

Status check_decoder(const json& decoder, const std::string& where) {
  std::string type = decoder.is_object() && decoder.contains("type") && decoder["type"].is_string()
                         ? decoder["type"].get<std::string>()
                         : "";
  if (type == "ByteLevel") return Status::ok();
  if (type == "Sequence" && decoder.contains("decoders") && decoder["decoders"].is_array() &&
      decoder["decoders"].size() == 1) {
    return check_decoder(decoder["decoders"][0], where);
  }
  return error(ErrorCode::kInvalidArgument,
               where + ": the decoder " +
                   (type.empty() ? decoder.dump() : "type \"" + type + "\"") +
                   " is not supported (a byte-level BPE needs the ByteLevel decoder)");
}

}  // namespace

HfTokenizer::HfTokenizer(BpeModel model) : model_(std::move(model)) {}
HfTokenizer::HfTokenizer(HfTokenizer&&) noexcept = default;
HfTokenizer& HfTokenizer::operator=(HfTokenizer&&) noexcept = default;
HfTokenizer::~HfTokenizer() = default;

Result<HfTokenizer> HfTokenizer::from_json(std::string_view tokenizer_json,
                                           const std::string& where) {
  EEP_ASSIGN_OR_RETURN(TokenizerFile file, parse_tokenizer_file(tokenizer_json, where));
  const json& root = file.root;
  // Every field below is checked before use; this catches what slips through (a type the checks
  // did not foresee), so that nothing throws out of the loader.
  try {
    if (!root.is_object()) return error(ErrorCode::kInvalidArgument, where + ": not an object");
    EEP_ASSIGN_OR_RETURN(BpeModel model, BpeModel::from_file(file, where));
    HfTokenizer tokenizer(std::move(model));
    const json kNull;
    auto field = [&](const char* name) -> const json& {
      return root.contains(name) ? root[name] : kNull;
    };
    EEP_ASSIGN_OR_RETURN(tokenizer.normalizer_,
                         UnicodeNormalizer::from_json(field("normalizer"), where));
    EEP_ASSIGN_OR_RETURN(tokenizer.pre_tokenizer_,
                         PreTokenizer::from_json(field("pre_tokenizer"), where));
    EEP_ASSIGN_OR_RETURN(tokenizer.post_processor_,
                         PostProcessor::from_json(field("post_processor"), where));
    EEP_RETURN_IF_ERROR(check_decoder(field("decoder"), where));
    EEP_ASSIGN_OR_RETURN(tokenizer.added_tokens_, parse_added_tokens(field("added_tokens"), where));

    int32_t vocab_size = tokenizer.model_.vocab_size();
    std::vector<AddedToken> raw_tokens, normalized_tokens;
    for (size_t idx = 0; idx < tokenizer.added_tokens_.size(); ++idx) {
      const AddedToken& token = tokenizer.added_tokens_[idx];
      const std::string* model_token = tokenizer.model_.token_of(token.id);
      std::optional<int32_t> model_id = tokenizer.model_.id_of(token.content);
      if ((model_token && *model_token != token.content) || (model_id && *model_id != token.id)) {
        return error(ErrorCode::kInvalidArgument, where + ": added token \"" + token.content +
                                                      "\" has the id " + std::to_string(token.id) +
                                                      ", which model.vocab gives another token");
      }
      tokenizer.added_token_idx_[token.id] = idx;
      vocab_size = std::max(vocab_size, token.id + 1);
      if (token.normalized) {
        AddedToken normalized = token;
        EEP_ASSIGN_OR_RETURN(normalized.content, tokenizer.normalizer_.apply(token.content));
        if (!normalized.content.empty()) normalized_tokens.push_back(std::move(normalized));
      } else {
        raw_tokens.push_back(token);
      }
    }
    tokenizer.raw_matcher_ = AddedTokenMatcher(std::move(raw_tokens));
    tokenizer.normalized_matcher_ = AddedTokenMatcher(std::move(normalized_tokens));

    tokenizer.token_bytes_.resize(static_cast<size_t>(vocab_size));
    tokenizer.is_special_.assign(static_cast<size_t>(vocab_size), false);
    for (int32_t id = 0; id < vocab_size; ++id) {
      std::optional<std::string> token = tokenizer.token_of(id);
      if (!token) continue;
      std::optional<std::string> bytes = byte_level_decode(*token);
      tokenizer.token_bytes_[id] = bytes ? std::move(*bytes) : std::move(*token);
    }
    for (const AddedToken& token : tokenizer.added_tokens_) {
      tokenizer.is_special_[token.id] = token.special;
    }
    return tokenizer;
  } catch (const json::exception& e) {
    return error(ErrorCode::kInvalidArgument, where + ": malformed: " + e.what());
  }
}

Result<HfTokenizer> HfTokenizer::load(const std::filesystem::path& dir) {
  fs::path tokenizer_path = dir / "tokenizer.json";
  std::error_code ec;
  if (!fs::exists(tokenizer_path, ec)) {
    return error(ErrorCode::kNotFound,
                 "no tokenizer.json in " + dir.string() + " (serve this model with token ids)");
  }
  EEP_ASSIGN_OR_RETURN(std::string text, read_file(tokenizer_path));
  EEP_ASSIGN_OR_RETURN(HfTokenizer tokenizer, from_json(text, tokenizer_path.string()));

  fs::path config_path = dir / "tokenizer_config.json";
  EEP_ASSIGN_OR_RETURN(std::optional<json> config, read_optional_json(config_path));
  if (config) {
    EEP_ASSIGN_OR_RETURN(tokenizer.config_, parse_tokenizer_config(*config, config_path.string()));
  }
  fs::path template_path = dir / "chat_template.jinja";
  if (tokenizer.config_.chat_template.empty() && fs::exists(template_path, ec)) {
    EEP_ASSIGN_OR_RETURN(tokenizer.config_.chat_template, read_file(template_path));
  }
  fs::path generation_path = dir / "generation_config.json";
  EEP_ASSIGN_OR_RETURN(std::optional<json> generation, read_optional_json(generation_path));
  if (generation) {
    EEP_ASSIGN_OR_RETURN(tokenizer.generation_config_,
                         parse_generation_config(*generation, generation_path.string()));
  }
  return tokenizer;
}

Result<std::vector<int32_t>> HfTokenizer::encode(std::string_view text,
                                                 bool add_special_tokens) const {
  std::string sanitized;
  if (!is_valid_utf8(text)) {
    sanitized = sanitize_utf8(text);
    text = sanitized;
  }
  std::vector<int32_t> ids;
  std::vector<TextSegment> segments;
  raw_matcher_.split(text, segments);
  for (const TextSegment& segment : segments) {
    if (segment.token_id >= 0) {
      ids.push_back(segment.token_id);
    } else {
      EEP_RETURN_IF_ERROR(encode_segment(segment.text, ids));
    }
  }
  if (add_special_tokens) return post_processor_.apply(std::move(ids));
  return ids;
}

Status HfTokenizer::encode_segment(std::string_view segment, std::vector<int32_t>& ids) const {
  std::string normalized;
  // ASCII is the same in every normalization form: most prompts skip ICU.
  bool ascii = std::all_of(segment.begin(), segment.end(),
                           [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  if (!normalizer_.is_identity() && !ascii) {
    EEP_ASSIGN_OR_RETURN(normalized, normalizer_.apply(segment));
    segment = normalized;
  }
  std::vector<TextSegment> segments;
  if (normalized_matcher_.empty()) {
    segments.push_back({segment});
  } else {
    normalized_matcher_.split(segment, segments);
  }
  std::vector<std::string_view> pieces;
  for (const TextSegment& part : segments) {
    if (part.token_id >= 0) {
      ids.push_back(part.token_id);
      continue;
    }
    EEP_RETURN_IF_ERROR(pre_tokenizer_.split(part.text, pieces));
    for (std::string_view piece : pieces) model_.encode(piece, ids);
  }
  return Status::ok();
}

void HfTokenizer::append_token_bytes(int32_t id, bool skip_special_tokens,
                                     std::string& bytes) const {
  if (id < 0 || id >= vocab_size()) return;
  if (skip_special_tokens && is_special_[id]) return;
  bytes += token_bytes_[id];
}

std::string HfTokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::string bytes;
  for (int32_t id : ids) append_token_bytes(id, skip_special_tokens, bytes);
  if (is_valid_utf8(bytes)) return bytes;
  return sanitize_utf8(bytes);
}

std::optional<int32_t> HfTokenizer::id_of(std::string_view token) const {
  for (const AddedToken& added : added_tokens_) {
    if (added.content == token) return added.id;
  }
  return model_.id_of(token);
}

std::optional<std::string> HfTokenizer::token_of(int32_t id) const {
  auto added = added_token_idx_.find(id);
  if (added != added_token_idx_.end()) return added_tokens_[added->second].content;
  if (const std::string* token = model_.token_of(id)) return *token;
  return std::nullopt;
}

bool HfTokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size() && is_special_[id];
}

std::vector<int32_t> HfTokenizer::eos_token_ids() const {
  if (!generation_config_.eos_token_ids.empty()) return generation_config_.eos_token_ids;
  if (config_.eos_token) {
    if (auto id = id_of(*config_.eos_token)) return {*id};
  }
  return {};
}

}  // namespace eep::coordinator::text
