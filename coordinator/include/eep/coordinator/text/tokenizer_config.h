// What a checkpoint says about its text beside tokenizer.json: tokenizer_config.json (special
// tokens by name, the chat template, add_bos_token, model_max_length; a chat_template.jinja file
// beside it, as recent transformers write it, when the config has none) and
// generation_config.json (EOS and BOS ids, default sampling values). Either file may be absent.
// Plain values; parsing is pure.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eep/common/status.h"

namespace eep::coordinator::text {

struct TokenizerConfig {
  // Special tokens by content; a token may be written as "..." or {"content": "..."}.
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  std::optional<std::string> pad_token;
  std::optional<std::string> unk_token;
  bool add_bos_token = false;
  bool add_eos_token = false;
  bool clean_up_tokenization_spaces = false;  // read, not applied (docs/tokenizer.md)
  std::optional<double> model_max_length;     // some files write 1e30 for "no limit"
  // The template used when a request names none: "chat_template" as a string, or the entry
  // named "default" of a list of {"name", "template"}; empty when there is none.
  std::string chat_template;
  std::map<std::string, std::string> named_chat_templates;  // every entry of such a list
};

struct GenerationConfig {
  std::vector<int32_t> eos_token_ids;  // "eos_token_id": an int or a list
  std::optional<int32_t> bos_token_id;
  std::optional<int32_t> pad_token_id;
  std::optional<double> temperature;
  std::optional<double> top_p;
  std::optional<int32_t> top_k;
  std::optional<double> repetition_penalty;
};

// kInvalidArgument naming `where` and the field when a present field has the wrong type.
Result<TokenizerConfig> parse_tokenizer_config(const nlohmann::json& config,
                                               const std::string& where);
Result<GenerationConfig> parse_generation_config(const nlohmann::json& config,
                                                 const std::string& where);

}  // namespace eep::coordinator::text
