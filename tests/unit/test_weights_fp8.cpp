// FP8 (float8 e4m3fn) values, the block-scaled layout of Hugging Face fine-grained FP8
// checkpoints, and their quantization_config.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <nlohmann/json.hpp>

#include "eep/worker/model/block_fp8.h"
#include "eep/worker/model/dtype.h"
#include "eep/worker/model/model_config.h"
#include "eep/worker/model/random_checkpoint.h"

namespace test_weights_fp8 {

using namespace eep::worker;

// The e4m3fn value of a code from the format's definition, computed another way than the
// converter: (-1)^s * 2^(e-7) * (1 + m/8) for e > 0, (-1)^s * 2^-6 * (m/8) for e = 0.
double e4m3_reference_value(int code) {
  const int sign = (code >> 7) & 1;
  const int exponent = (code >> 3) & 15;
  const int mantissa = code & 7;
  if (exponent == 15 && mantissa == 7) return std::numeric_limits<double>::quiet_NaN();
  const double magnitude = exponent == 0 ? std::ldexp(mantissa / 8.0, -6)
                                         : std::ldexp(1.0 + mantissa / 8.0, exponent - 7);
  return sign ? -magnitude : magnitude;
}

// The code nearest to `value` by exhaustive search (ties to the code with an even mantissa),
// saturating beyond 448: the rounding rule stated plainly.
uint8_t e4m3_nearest_code(float value) {
  const double target = std::fabs(static_cast<double>(value));
  int best = 0;
  for (int code = 1; code <= 0x7e; ++code) {
    const double error = std::fabs(e4m3_reference_value(code) - target);
    const double best_error = std::fabs(e4m3_reference_value(best) - target);
    if (error < best_error || (error == best_error && (code & 1) == 0)) best = code;
  }
  return static_cast<uint8_t>((std::signbit(value) ? 0x80 : 0) | best);
}

// The tiny preset's config.json with `quantization_config` added.
nlohmann::json fp8_config_json(const nlohmann::json& quantization_config) {
  auto config = model_preset("tiny");
  REQUIRE(config.is_ok());
  nlohmann::json json = config->to_json();
  json["quantization_config"] = quantization_config;
  return json;
}

// Qwen/Qwen3-30B-A3B-FP8's quantization_config, key for key.
nlohmann::json qwen3_fp8_quantization_config() {
  return {{"activation_scheme", "dynamic"},
          {"fmt", "e4m3"},
          {"quant_method", "fp8"},
          {"weight_block_size", {128, 128}}};
}

}  // namespace test_weights_fp8

using namespace test_weights_fp8;

TEST_CASE("fp8 e4m3: every one of the 256 codes decodes to the format's value", "[fp8]") {
  CHECK(dtype_from_string("F8_E4M3") == DType::kF8E4M3);
  CHECK(to_string(DType::kF8E4M3) == "F8_E4M3");
  CHECK(dtype_size_bytes(DType::kF8E4M3) == 1);
  CHECK_FALSE(is_weight_dtype(DType::kF8E4M3));  // needs its scales
  int num_nan = 0;
  for (int code = 0; code < 256; ++code) {
    INFO("code 0x" << std::hex << code);
    const float decoded = fp8_e4m3_to_fp32(static_cast<uint8_t>(code));
    const double expected = e4m3_reference_value(code);
    if (std::isnan(expected)) {
      ++num_nan;
      CHECK(std::isnan(decoded));
      CHECK(fp32_to_fp8_e4m3(decoded) == code);  // the sign of a NaN survives
      continue;
    }
    CHECK(static_cast<double>(decoded) == expected);
    CHECK(std::signbit(decoded) == (code >= 0x80));  // -0 included
    CHECK(fp32_to_fp8_e4m3(decoded) == code);        // every finite code round-trips
  }
  CHECK(num_nan == 2);
  CHECK(fp8_e4m3_to_fp32(0x7e) == kF8E4M3Max);
  CHECK(fp8_e4m3_to_fp32(0x01) == std::ldexp(1.0f, -9));  // smallest subnormal
  CHECK(fp8_e4m3_to_fp32(0x08) == std::ldexp(1.0f, -6));  // smallest normal
}

TEST_CASE("fp8 e4m3: rounding to nearest even at every tie, subnormals and overflow", "[fp8]") {
  // Between each pair of neighbouring finite codes: the midpoint goes to the even code, a hair
  // either side to the nearer one.
  for (int code = 0; code < 0x7e; ++code) {
    INFO("codes 0x" << std::hex << code << " and 0x" << code + 1);
    const float low = fp8_e4m3_to_fp32(static_cast<uint8_t>(code));
    const float high = fp8_e4m3_to_fp32(static_cast<uint8_t>(code + 1));
    const float middle = (low + high) / 2;  // exact: a few significant bits
    const int even = (code & 1) == 0 ? code : code + 1;
    CHECK(fp32_to_fp8_e4m3(middle) == even);
    CHECK(fp32_to_fp8_e4m3(-middle) == (0x80 | even));
    CHECK(fp32_to_fp8_e4m3(std::nextafter(middle, 0.0f)) == code);
    CHECK(fp32_to_fp8_e4m3(std::nextafter(middle, 1000.0f)) == code + 1);
  }
  // Subnormals: half the smallest one ties to zero, 1.5 of it ties up to the even 2.
  CHECK(fp32_to_fp8_e4m3(std::ldexp(1.0f, -10)) == 0x00);
  CHECK(fp32_to_fp8_e4m3(-std::ldexp(1.0f, -10)) == 0x80);
  CHECK(fp32_to_fp8_e4m3(std::ldexp(1.5f, -9)) == 0x02);
  CHECK(fp32_to_fp8_e4m3(1e-30f) == 0x00);
  CHECK(fp32_to_fp8_e4m3(std::numeric_limits<float>::denorm_min()) == 0x00);
  // Just under the smallest normal rounds up into it.
  CHECK(fp32_to_fp8_e4m3(std::nextafter(std::ldexp(1.0f, -6), 0.0f)) == 0x08);
  // Overflow saturates at 448; 464 (the midpoint to the missing 480) too.
  for (float big : {448.5f, 463.9f, 464.0f, 465.0f, 1e6f, std::numeric_limits<float>::max()}) {
    CHECK(fp32_to_fp8_e4m3(big) == 0x7e);
    CHECK(fp32_to_fp8_e4m3(-big) == 0xfe);
  }
  // The format has no infinity: NaN, as it is for NaN.
  CHECK(fp32_to_fp8_e4m3(std::numeric_limits<float>::infinity()) == 0x7f);
  CHECK(fp32_to_fp8_e4m3(-std::numeric_limits<float>::infinity()) == 0xff);
  CHECK(fp32_to_fp8_e4m3(std::numeric_limits<float>::quiet_NaN()) == 0x7f);
}

TEST_CASE("fp8 e4m3: the converter agrees with an exhaustive nearest-code search", "[fp8]") {
  std::mt19937 rng(21);
  std::uniform_real_distribution<float> exponent(-14.0f, 10.0f);
  std::uniform_int_distribution<int> sign(0, 1);
  for (int i = 0; i < 20000; ++i) {
    const float magnitude = std::exp2(exponent(rng));
    const float value = sign(rng) ? -magnitude : magnitude;
    INFO("value " << value);
    CHECK(fp32_to_fp8_e4m3(value) == e4m3_nearest_code(value));
  }
}

TEST_CASE("fp8 e4m3: NaN codes are found as non-finite weights", "[fp8]") {
  std::vector<std::byte> codes = {std::byte{0x00}, std::byte{0x7e}, std::byte{0xfe},
                                  std::byte{0x80}};
  CHECK_FALSE(first_non_finite(DType::kF8E4M3, codes).has_value());
  codes.push_back(std::byte{0xff});
  CHECK(first_non_finite(DType::kF8E4M3, codes) == 4u);
  codes[1] = std::byte{0x7f};
  CHECK(first_non_finite(DType::kF8E4M3, codes) == 1u);
}

TEST_CASE("fp8 config: the quantization_config of published FP8 checkpoints", "[fp8][config]") {
  auto parsed = parse_model_config(fp8_config_json(qwen3_fp8_quantization_config()), "test");
  REQUIRE(parsed.is_ok());
  REQUIRE(parsed->quantization.has_value());
  CHECK(parsed->quantization->block_rows == 128);
  CHECK(parsed->quantization->block_cols == 128);
  CHECK(parsed->quantization->modules_to_not_convert.empty());
  // What we write reads back the same; an unquantized config has none.
  auto again = parse_model_config(parsed->to_json(), "again");
  REQUIRE(again.is_ok());
  REQUIRE(again->quantization.has_value());
  CHECK(again->quantization->block_rows == 128);
  CHECK(parsed->to_json()["quantization_config"] == qwen3_fp8_quantization_config());
  auto plain = model_preset("tiny");
  REQUIRE(plain.is_ok());
  CHECK_FALSE(plain->to_json().contains("quantization_config"));
  CHECK_FALSE(parse_model_config(plain->to_json(), "plain")->quantization.has_value());

  // transformers' FineGrainedFP8Config: no fmt, modules_to_not_convert; a rectangular block.
  nlohmann::json transformers = {{"quant_method", "fp8"},
                                 {"activation_scheme", "dynamic"},
                                 {"weight_block_size", {64, 32}},
                                 {"modules_to_not_convert", {"lm_head", "model.layers.0.mlp.gate"}},
                                 {"dequantize", false}};
  auto from_transformers = parse_model_config(fp8_config_json(transformers), "test");
  REQUIRE(from_transformers.is_ok());
  CHECK(from_transformers->quantization->block_rows == 64);
  CHECK(from_transformers->quantization->block_cols == 32);
  CHECK(from_transformers->quantization->modules_to_not_convert ==
        std::vector<std::string>{"lm_head", "model.layers.0.mlp.gate"});
  // vLLM's spelling of the same list; null means none.
  transformers.erase("modules_to_not_convert");
  transformers["ignored_layers"] = nlohmann::json::array({"lm_head"});
  auto from_vllm = parse_model_config(fp8_config_json(transformers), "test");
  REQUIRE(from_vllm.is_ok());
  CHECK(from_vllm->quantization->modules_to_not_convert == std::vector<std::string>{"lm_head"});
  CHECK(parse_model_config(fp8_config_json(nullptr), "test")->quantization == std::nullopt);
}

TEST_CASE("fp8 config: anything but block-scaled e4m3 with dynamic activations is refused",
          "[fp8][config]") {
  struct Case {
    const char* key;
    nlohmann::json value;  // null: erase the key
    const char* says;
  };
  const std::vector<Case> cases = {
      {"quant_method", "awq", "quant_method \"awq\" is not supported"},
      {"quant_method", "compressed-tensors", "quant_method \"compressed-tensors\""},
      {"quant_method", nullptr, "quant_method (missing)"},
      {"fmt", "e5m2", "fmt \"e5m2\" is not supported"},
      {"activation_scheme", "static", "activation_scheme \"static\" is not supported"},
      {"weight_block_size", nullptr, "per-tensor FP8 scales are not supported"},
      {"weight_block_size", {128}, "is not a 2-D block"},
      {"weight_block_size", {128, 128, 1}, "is not a 2-D block"},
      {"weight_block_size", {"128", 128}, "is not a 2-D block"},
      {"weight_block_size", {0, 128}, "out of range"},
      {"weight_block_size", {128, -1}, "out of range"},
      {"modules_to_not_convert", "lm_head", "must be a list of module names"},
      {"ignored_layers", {1}, "must be a list of module names"},
  };
  for (const Case& c : cases) {
    nlohmann::json quantization = qwen3_fp8_quantization_config();
    if (c.value.is_null()) {
      quantization.erase(c.key);
    } else {
      quantization[c.key] = c.value;
    }
    INFO(quantization.dump());
    auto parsed = parse_model_config(fp8_config_json(quantization), "dir/config.json");
    REQUIRE_FALSE(parsed.is_ok());
    CHECK(parsed.status().code() == eep::ErrorCode::kInvalidArgument);
    CHECK_THAT(parsed.status().message(), Catch::Contains("dir/config.json: quantization_config"));
    CHECK_THAT(parsed.status().message(), Catch::Contains(c.says));
    CHECK_THAT(parsed.status().message(), Catch::Contains("only Hugging Face fine-grained FP8"));
  }
  auto not_object = parse_model_config(fp8_config_json("fp8"), "c.json");
  REQUIRE_FALSE(not_object.is_ok());
  CHECK_THAT(not_object.status().message(), Catch::Contains("must be an object"));
}

TEST_CASE("fp8 blocks: quantize then dequantize stays within e4m3's rounding bound per block",
          "[fp8]") {
  // Partial blocks at the right and bottom edges, blocks of very different magnitudes, an
  // all-zero block and values small enough to land in the subnormals.
  const Fp8BlockGeometry geometry{37, 53, 16, 24};
  REQUIRE(geometry.scale_shape() == std::vector<int64_t>{3, 3});
  std::mt19937 rng(8);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(37 * 53);
  for (int64_t row = 0; row < geometry.rows; ++row) {
    for (int64_t col = 0; col < geometry.cols; ++col) {
      const int64_t block = (row / 16) * 3 + col / 24;
      const float magnitude = std::ldexp(1.0f, static_cast<int>(block * 3) - 12);
      values[row * 53 + col] = block == 4 ? 0.0f : magnitude * normal(rng);
    }
  }
  std::vector<std::byte> codes(values.size());
  std::vector<float> scales(9);
  quantize_fp8_blocks(geometry, values, codes, scales);
  CHECK_FALSE(first_invalid_scale(scales).has_value());
  CHECK(scales[4] == 1.0f);  // the all-zero block: a usable scale, not 0
  std::vector<float> dequantized(values.size());
  dequantize_fp8_blocks(geometry, codes, scales, 0, dequantized);
  for (int64_t row = 0; row < geometry.rows; ++row) {
    for (int64_t col = 0; col < geometry.cols; ++col) {
      const std::size_t idx = row * 53 + col;
      const float scale = scales[(row / 16) * 3 + col / 24];
      // Half an ulp of 3 mantissa bits relative (normals), half of 2^-9 absolute (subnormals),
      // both in units of the block's scale; plus fp32 rounding of the division and the product.
      const float bound =
          std::max(std::fabs(values[idx]) / 16, scale * std::ldexp(1.0f, -10)) * (1 + 1e-6f);
      INFO("row " << row << " col " << col << " value " << values[idx]);
      CHECK(std::fabs(dequantized[idx] - values[idx]) <= bound);
      // Every code lies within the format's range: the block's largest value maps to 448.
      CHECK(std::fabs(fp8_e4m3_to_fp32(static_cast<uint8_t>(codes[idx]))) <= kF8E4M3Max);
    }
  }
  for (std::size_t block = 0; block < 9; ++block) {
    if (block == 4) continue;
    bool has_max = false;
    for (std::size_t idx = 0; idx < codes.size(); ++idx) {
      const int64_t row = static_cast<int64_t>(idx) / 53, col = static_cast<int64_t>(idx) % 53;
      if (static_cast<std::size_t>((row / 16) * 3 + col / 24) != block) continue;
      has_max = has_max || (static_cast<uint8_t>(codes[idx]) & 0x7f) == 0x7e;
    }
    CHECK(has_max);
  }
  // A range that starts and ends mid-row reads the same values as the whole matrix.
  std::vector<float> part(200);
  dequantize_fp8_blocks(geometry, codes, scales, 1000, part);
  CHECK(std::equal(part.begin(), part.end(), dequantized.begin() + 1000));
}

TEST_CASE("fp8 blocks: a scale must be finite and positive", "[fp8]") {
  CHECK_FALSE(first_invalid_scale(std::vector<float>{1e-30f, 2.0f, 448.0f}).has_value());
  CHECK(first_invalid_scale(std::vector<float>{1.0f, 0.0f}) == 1u);
  CHECK(first_invalid_scale(std::vector<float>{1.0f, 1.0f, -2.0f}) == 2u);
  CHECK(first_invalid_scale(std::vector<float>{std::numeric_limits<float>::quiet_NaN()}) == 0u);
  CHECK(first_invalid_scale(std::vector<float>{1.0f, std::numeric_limits<float>::infinity()}) ==
        1u);
}
