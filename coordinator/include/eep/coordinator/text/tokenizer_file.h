// Reads a tokenizer.json without building a JSON tree of its two big fields: model.vocab (token ->
// id, 151,643 entries for Qwen3) and model.merges (151,387 pairs) stream into flat vectors while
// nlohmann's SAX parser goes through the file; everything else becomes an ordinary JSON tree.
// A tree of the whole file took most of a second; this takes a fraction. Pure.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "eep/common/status.h"

namespace eep::coordinator::text {

struct TokenizerFile {
  nlohmann::json root;  // the file without model.vocab and model.merges
  bool has_vocab = false;
  bool has_merges = false;
  std::vector<std::pair<std::string, int64_t>> vocab;       // in file order
  std::vector<std::pair<std::string, std::string>> merges;  // by rank
};

// kInvalidArgument naming `where` for text that is not JSON (with the parser's position), a vocab
// that is not an object of integers, a merge that is neither "a b" nor ["a", "b"].
Result<TokenizerFile> parse_tokenizer_file(std::string_view text, const std::string& where);

// The same from an already parsed tree (small files built in tests and tools).
Result<TokenizerFile> tokenizer_file_from_json(nlohmann::json root, const std::string& where);

}  // namespace eep::coordinator::text
