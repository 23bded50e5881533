// FP8 (float8 e4m3fn) values, the block-scaled layout of Hugging Face fine-grained FP8
// checkpoints, and their quantization_config.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <nlohmann/json.hpp>

#include "eep/worker/model/dtype.h"

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
