// A small checkpoint text for API tests: a byte-level BPE tokenizer.json (the 256 byte tokens,
// ids 0..255 in byte order, two merges, Qwen3's three special tokens as 258..260), a
// tokenizer_config.json with a ChatML chat template in Qwen3's style (enable_thinking,
// raise_exception on a role it refuses) and a generation_config.json, written to a scratch
// folder and loaded as the coordinator loads a checkpoint's (load_model_text).
#pragma once

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "eep/coordinator/model_text.h"
#include "eep/coordinator/text/byte_level.h"
#include "scratch_dir.h"

namespace eep::coordinator::testing {

constexpr int32_t kEndOfTextId = 258;
constexpr int32_t kImStartId = 259;
constexpr int32_t kImEndId = 260;

// The ChatML of Qwen3's template, small: every message, then the assistant's turn when asked,
// with an empty <think> block when enable_thinking is false.
inline const char* kChatTemplate =
    "{% for m in messages %}"
    "{% if m.role == 'developer' %}{{ raise_exception('developer messages are not supported') }}"
    "{% endif %}"
    "<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
    "{% endfor %}"
    "{% if tools %}<tools>{{ tools | length }}</tools>\n{% endif %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}";

inline nlohmann::json small_tokenizer_json() {
  using nlohmann::json;
  json vocab = json::object();
  for (int byte = 0; byte < 256; ++byte) {
    std::string token = text::byte_level_encode(std::string(1, static_cast<char>(byte)));
    vocab[token] = byte;
  }
  vocab["he"] = 256;
  vocab["ll"] = 257;
  json added = json::array();
  int32_t id = kEndOfTextId;
  for (const char* content : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
    added.push_back({{"id", id++},
                     {"content", content},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  return {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         json::array({{{"type", "Split"},
                       {"pattern", {{"Regex", " ?\\p{L}+| ?\\p{N}| ?[^\\s\\p{L}\\p{N}]+|\\s+"}}},
                       {"behavior", "Isolated"},
                       {"invert", false}},
                      {{"type", "ByteLevel"},
                       {"add_prefix_space", false},
                       {"trim_offsets", false},
                       {"use_regex", false}}})}}},
      {"post_processor", nullptr},
      {"decoder",
       {{"type", "ByteLevel"},
        {"add_prefix_space", false},
        {"trim_offsets", false},
        {"use_regex", false}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", ""},
        {"end_of_word_suffix", ""},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"vocab", vocab},
        {"merges", json::array({"h e", "l l"})}}}};
}

inline void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// A checkpoint folder named `name` with the files above; `tokenizer_config` replaces the default
// one when given.
inline std::filesystem::path write_chat_model_dir(
    const std::string& name, std::optional<nlohmann::json> tokenizer_config = std::nullopt) {
  std::filesystem::path dir = eep::testing::process_scratch_dir("eep_chat_model") / name;
  std::filesystem::create_directories(dir);
  write_file(dir / "tokenizer.json", small_tokenizer_json().dump());
  nlohmann::json config =
      tokenizer_config.value_or(nlohmann::json{{"bos_token", nullptr},
                                               {"eos_token", "<|im_end|>"},
                                               {"pad_token", "<|endoftext|>"},
                                               {"chat_template", kChatTemplate}});
  write_file(dir / "tokenizer_config.json", config.dump());
  write_file(dir / "generation_config.json",
             nlohmann::json{{"eos_token_id", {kImEndId, kEndOfTextId}},
                            {"temperature", 0.6},
                            {"top_p", 0.95},
                            {"top_k", 20}}
                 .dump());
  return dir;
}

// A ModelInfo of a 300-id model (the tokenizer's 261 fit) with the checkpoint's text.
inline ModelInfo chat_model(int max_model_len = 256) {
  static const ModelText text = [] {
    auto loaded = load_model_text(write_chat_model_dir("default"));
    if (!loaded.is_ok()) FAIL(loaded.status().to_string());
    return std::move(loaded).value();
  }();
  ModelInfo model{"chat-model", 300, max_model_len, false, 1700000000, nullptr, nullptr};
  model.tokenizer = text.tokenizer;
  model.chat_template = text.chat_template;
  return model;
}

}  // namespace eep::coordinator::testing
