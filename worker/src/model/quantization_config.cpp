#include "eep/worker/model/quantization_config.h"

namespace eep::worker {
namespace {

using nlohmann::json;

// A block larger than this is a typo or garbage: the published block is 128.
constexpr int64_t kMaxBlockSize = 1 << 16;

}  // namespace

json Fp8BlockQuantization::to_json() const {
  json out = {
      {"quant_method", "fp8"},
      {"fmt", "e4m3"},
      {"activation_scheme", "dynamic"},
      {"weight_block_size", {block_rows, block_cols}},
  };
  if (!modules_to_not_convert.empty()) out["modules_to_not_convert"] = modules_to_not_convert;
  return out;
}

Result<Fp8BlockQuantization> parse_quantization_config(const json& value, std::string_view source) {
  auto fail = [&](const std::string& what) {
    return error(ErrorCode::kInvalidArgument,
                 std::string(source) + ": quantization_config " + what +
                     "; only Hugging Face fine-grained FP8 is supported ({\"quant_method\": "
                     "\"fp8\", \"fmt\": \"e4m3\", \"activation_scheme\": \"dynamic\", "
                     "\"weight_block_size\": [rows, cols]})");
  };
  if (!value.is_object()) return fail("must be an object, found " + value.dump());
  const auto method = value.find("quant_method");
  if (method == value.end() || *method != json("fp8")) {
    return fail("quant_method " +
                (method == value.end() ? std::string("(missing)") : method->dump()) +
                " is not supported");
  }
  // transformers' FineGrainedFP8Config omits fmt (e4m3 is implied); Qwen and DeepSeek write it.
  if (const auto fmt = value.find("fmt");
      fmt != value.end() && !fmt->is_null() && *fmt != json("e4m3")) {
    return fail("fmt " + fmt->dump() + " is not supported (only e4m3, float8_e4m3fn)");
  }
  if (const auto scheme = value.find("activation_scheme");
      scheme != value.end() && !scheme->is_null() && *scheme != json("dynamic")) {
    return fail("activation_scheme " + scheme->dump() +
                " is not supported (only dynamic: activations are not quantized with stored "
                "scales)");
  }
  const auto block = value.find("weight_block_size");
  if (block == value.end() || block->is_null()) {
    return fail("has no weight_block_size: per-tensor FP8 scales are not supported");
  }
  Fp8BlockQuantization quantization;
  if (!block->is_array() || block->size() != 2 || !(*block)[0].is_number_integer() ||
      !(*block)[1].is_number_integer()) {
    return fail("weight_block_size " + block->dump() + " is not a 2-D block [rows, cols]");
  }
  quantization.block_rows = (*block)[0].get<int64_t>();
  quantization.block_cols = (*block)[1].get<int64_t>();
  for (int64_t size : {quantization.block_rows, quantization.block_cols}) {
    if (size < 1 || size > kMaxBlockSize) {
      return fail("weight_block_size " + block->dump() + " is out of range [1, " +
                  std::to_string(kMaxBlockSize) + "]");
    }
  }
  for (const char* key : {"modules_to_not_convert", "ignored_layers"}) {
    const auto list = value.find(key);
    if (list == value.end() || list->is_null()) continue;
    if (!list->is_array()) return fail(std::string(key) + " must be a list of module names");
    for (const json& name : *list) {
      if (!name.is_string()) {
        return fail(std::string(key) + " must be a list of module names, found " + name.dump());
      }
      quantization.modules_to_not_convert.push_back(name.get<std::string>());
    }
  }
  return quantization;
}

}  // namespace eep::worker
