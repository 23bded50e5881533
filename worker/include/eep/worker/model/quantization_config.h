// The "quantization_config" of a config.json. Supported: Hugging Face fine-grained FP8, as
// Qwen/Qwen3-30B-A3B-FP8 and DeepSeek-V3 ship it:
//   {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
//    "weight_block_size": [128, 128]}
// i.e. linear weights stored as float8 e4m3fn, each [block_rows x block_cols] block of a
// [out_features, in_features] weight with one fp32 scale (block_fp8.h). Anything else (other
// methods such as AWQ/GPTQ/compressed-tensors, static activation scales, per-tensor FP8 without
// weight_block_size, other FP8 formats) is refused by name rather than served wrongly.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "eep/common/status.h"

namespace eep::worker {

struct Fp8BlockQuantization {
  int64_t block_rows = 128;  // weight_block_size[0]: output features (weight rows) per block
  int64_t block_cols = 128;  // weight_block_size[1]: input features (weight columns) per block
  // modules_to_not_convert, or vLLM's ignored_layers, as written. Informative: which tensors are
  // quantized is read from each tensor's dtype (a layer left in BF16 simply is not F8_E4M3).
  std::vector<std::string> modules_to_not_convert;

  // What transformers writes for this method (FineGrainedFP8Config plus Qwen's "fmt").
  nlohmann::json to_json() const;
};

// `value` is config.json's "quantization_config"; nullopt for null (an unquantized model).
// kInvalidArgument naming what is unsupported; `source` names the file in messages.
Result<Fp8BlockQuantization> parse_quantization_config(const nlohmann::json& value,
                                                       std::string_view source);

}  // namespace eep::worker
