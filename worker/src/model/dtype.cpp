#include "eep/worker/model/dtype.h"

#include <array>
#include <cmath>
#include <cstring>
#include <limits>

#include "eep/common/check.h"

namespace eep::worker {
namespace {

struct DTypeName {
  DType dtype;
  std::string_view name;
  std::size_t size_bytes;
};

constexpr std::array<DTypeName, 11> kDTypes = {{
    {DType::kF64, "F64", 8},
    {DType::kF32, "F32", 4},
    {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2},
    {DType::kF8E4M3, "F8_E4M3", 1},
    {DType::kI64, "I64", 8},
    {DType::kI32, "I32", 4},
    {DType::kI16, "I16", 2},
    {DType::kI8, "I8", 1},
    {DType::kU8, "U8", 1},
    {DType::kBool, "BOOL", 1},
}};

const DTypeName& entry(DType dtype) {
  for (const auto& e : kDTypes) {
    if (e.dtype == dtype) return e;
  }
  EEP_CHECK_MSG(false, "unknown DType " << static_cast<int>(dtype));
  return kDTypes[0];
}

}  // namespace

std::string_view to_string(DType dtype) {
  return entry(dtype).name;
}

std::optional<DType> dtype_from_string(std::string_view name) {
  for (const auto& e : kDTypes) {
    if (e.name == name) return e.dtype;
  }
  return std::nullopt;
}

std::size_t dtype_size_bytes(DType dtype) {
  return entry(dtype).size_bytes;
}

bool is_weight_dtype(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kBF16 || dtype == DType::kF16;
}

float fp16_to_fp32(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0x1f) {
    return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  }
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in fp32.
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

uint16_t fp32_to_fp16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs_bits = bits & 0x7fffffffu;
  if (abs_bits > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (abs_bits >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (abs_bits < 0x38800000u) {
    // Result is subnormal (or zero) in fp16: scale to units of 2^-24 and round to nearest even.
    const float scaled = std::fabs(value) * 16777216.0f;  // exact: power-of-two scaling
    const float rounded = std::nearbyint(scaled);         // default mode: ties to even
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(rounded));
  }
  // Normal: rebias the exponent, round the 13 dropped mantissa bits to nearest even.
  const uint32_t rebased = abs_bits - (112u << 23);
  const uint32_t rounding_bias = 0xfffu + ((rebased >> 13) & 1u);
  return static_cast<uint16_t>(sign | ((rebased + rounding_bias) >> 13));
}

namespace {

// All exponent bits set: NaN or infinity, for a format whose exponent field is `mask`.
template <typename Bits>
std::optional<std::size_t> first_all_ones(std::span<const std::byte> bytes, Bits mask) {
  const std::size_t count = bytes.size() / sizeof(Bits);
  for (std::size_t idx = 0; idx < count; ++idx) {
    Bits value;
    std::memcpy(&value, bytes.data() + idx * sizeof(Bits), sizeof(Bits));
    if ((value & mask) == mask) return idx;
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::size_t> first_non_finite(DType dtype, std::span<const std::byte> bytes) {
  switch (dtype) {
    case DType::kF32:
      return first_all_ones<uint32_t>(bytes, 0x7f800000u);
    case DType::kBF16:
      return first_all_ones<uint16_t>(bytes, 0x7f80u);
    case DType::kF16:
      return first_all_ones<uint16_t>(bytes, 0x7c00u);
    case DType::kF8E4M3:
      // No infinities; NaN is S.1111.111, so the mask is the exponent and mantissa together.
      return first_all_ones<uint8_t>(bytes, 0x7fu);
    default:
      return std::nullopt;
  }
}

std::optional<std::size_t> first_non_finite(std::span<const float> values) {
  for (std::size_t idx = 0; idx < values.size(); ++idx) {
    if (!std::isfinite(values[idx])) return idx;
  }
  return std::nullopt;
}

}  // namespace eep::worker
