// tokenizer.json's "post_processor", which adds special tokens around an encoded text when the
// caller asks for them (encode's add_special_tokens): ByteLevel (Qwen3's: adds nothing; it only
// trims offsets, which we do not keep), TemplateProcessing's "single" template (Llama-style
// <s> before the text), and a Sequence of those. Others are refused at load, naming the type.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eep/common/status.h"

namespace eep::coordinator::text {

class PostProcessor {
 public:
  // The identity (null).
  PostProcessor() = default;
  // kInvalidArgument naming `where` for what is not supported or is malformed.
  static Result<PostProcessor> from_json(const nlohmann::json& post_processor,
                                         const std::string& where);

  // `ids` of one text with the template's special tokens around them.
  std::vector<int32_t> apply(std::vector<int32_t> ids) const;

 private:
  // The single template: special-token ids, and the place of the text (kSequence).
  static constexpr int32_t kSequence = -1;
  std::vector<int32_t> single_template_;
};

}  // namespace eep::coordinator::text
