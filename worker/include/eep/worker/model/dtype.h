// Element types of checkpoint tensors (the safetensors dtype strings) and the bf16/fp16/fp8 <->
// fp32 conversions used to widen weights on load and to narrow generated weights on write.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "eep/kernels/fp8.h"

namespace eep::worker {

// kF8E4M3: float8 e4m3fn (torch.float8_e4m3fn, safetensors "F8_E4M3"): 1 sign bit, 4 exponent
// bits with bias 7, 3 mantissa bits; no infinities, S.1111.111 is NaN, the largest finite value is
// 448. Only block-scaled weights use it (see block_fp8.h): its values mean nothing without scales.
enum class DType { kF64, kF32, kF16, kBF16, kF8E4M3, kI64, kI32, kI16, kI8, kU8, kBool };

// "F32", "BF16", ... exactly as safetensors spells them.
std::string_view to_string(DType dtype);
std::optional<DType> dtype_from_string(std::string_view name);
std::size_t dtype_size_bytes(DType dtype);
// True for the floating-point types a weight may be stored in by itself (F32, BF16, F16); F8_E4M3
// weights need their block scales too, so they are not among them.
bool is_weight_dtype(DType dtype);

inline float bf16_to_fp32(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

// Round to nearest, ties to even; NaN stays NaN (quiet), infinities stay infinite.
inline uint16_t fp32_to_bf16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  const uint32_t rounding_bias = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding_bias) >> 16);
}

// The index of the first NaN or infinity among `bytes` read as `dtype` (F32, BF16, F16, F8_E4M3;
// nullopt for other types and when every value is finite). A weight that is not finite makes a
// model emit garbage (token 0 forever), so checkpoints are refused with it.
std::optional<std::size_t> first_non_finite(DType dtype, std::span<const std::byte> bytes);
std::optional<std::size_t> first_non_finite(std::span<const float> values);

// IEEE half precision; subnormals handled exactly.
float fp16_to_fp32(uint16_t bits);
// Round to nearest, ties to even; overflow gives infinity.
uint16_t fp32_to_fp16(float value);

// e4m3fn codes and numbers (eep/kernels/fp8.h: exact decoding, round-to-nearest-even encoding
// that saturates finite values to +-448).
using kernels::cpu::fp32_to_fp8_e4m3;
using kernels::cpu::fp8_e4m3_to_fp32;
using kernels::cpu::kF8E4M3Max;

}  // namespace eep::worker
