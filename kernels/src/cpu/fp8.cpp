#include "eep/kernels/fp8.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

namespace eep::kernels::cpu {

float fp8_e4m3_to_fp32(uint8_t bits) {
  const bool negative = (bits & 0x80u) != 0;
  const uint32_t exponent = (bits >> 3) & 0xfu;
  const uint32_t mantissa = bits & 0x7u;
  if (exponent == 0xf && mantissa == 0x7) {
    return negative ? -std::numeric_limits<float>::quiet_NaN()
                    : std::numeric_limits<float>::quiet_NaN();
  }
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-9, exact in fp32.
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -9);
    return negative ? -magnitude : magnitude;
  }
  return std::bit_cast<float>((negative ? 0x80000000u : 0u) | ((exponent + 120u) << 23) |
                              (mantissa << 20));
}

uint8_t fp32_to_fp8_e4m3(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const auto sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const uint32_t abs_bits = bits & 0x7fffffffu;
  if (abs_bits >= 0x7f800000u) return static_cast<uint8_t>(sign | 0x7fu);  // NaN, infinity
  const float magnitude = std::bit_cast<float>(abs_bits);
  if (magnitude > kF8E4M3Max) return static_cast<uint8_t>(sign | 0x7eu);  // saturate
  if (abs_bits < 0x3c800000u) {
    // Below 2^-6, the smallest normal: count units of 2^-9 and round to nearest even (8 units is
    // 2^-6 itself, code 0x08, so rounding up into the normals needs no special case).
    const float units = std::nearbyint(magnitude * 512.0f);  // exact power-of-two scaling
    return static_cast<uint8_t>(sign | static_cast<uint8_t>(units));
  }
  // Normal: keep 3 of the 23 mantissa bits, rounding the 20 dropped ones to nearest even (a carry
  // runs into the exponent), then rebias the exponent from 127 to 7.
  const uint32_t rounding_bias = 0x7ffffu + ((abs_bits >> 20) & 1u);
  const uint32_t rounded = (abs_bits + rounding_bias) >> 20;
  return static_cast<uint8_t>(sign | (rounded - (120u << 3)));
}

void quantize_fp8_rows(const float* x, int64_t rows, int64_t k, uint8_t* q, float* scales) {
  const int64_t num_blocks = k / kFp8Block;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t kb = 0; kb < num_blocks; ++kb) {
      const float* block = x + r * k + kb * kFp8Block;
      float absmax = 0.0f;
      for (int64_t i = 0; i < kFp8Block; ++i) absmax = std::max(absmax, std::fabs(block[i]));
      const float scale = absmax > 0.0f ? absmax / kF8E4M3Max : 1.0f;
      scales[r * num_blocks + kb] = scale;
      for (int64_t i = 0; i < kFp8Block; ++i) {
        q[r * k + kb * kFp8Block + i] = fp32_to_fp8_e4m3(block[i] / scale);
      }
    }
  }
}

void grouped_matmul_nt_fp8(const uint8_t* a, const float* a_scales, const uint8_t* b,
                           const float* b_scales, const int32_t* offsets, int64_t num_groups,
                           int64_t n, int64_t k, float* c) {
  const int64_t k_blocks = k / kFp8Block;
  const int64_t n_blocks = n / kFp8Block;
  for (int64_t g = 0; g < num_groups; ++g) {
    const uint8_t* b_group = b + g * n * k;
    const float* b_group_scales = b_scales + g * n_blocks * k_blocks;
    for (int64_t r = offsets[g]; r < offsets[g + 1]; ++r) {
      for (int64_t j = 0; j < n; ++j) {
        float sum = 0.0f;
        for (int64_t kb = 0; kb < k_blocks; ++kb) {
          float block_sum = 0.0f;
          for (int64_t p = kb * kFp8Block; p < (kb + 1) * kFp8Block; ++p) {
            block_sum += fp8_e4m3_to_fp32(a[r * k + p]) * fp8_e4m3_to_fp32(b_group[j * k + p]);
          }
          sum += block_sum *
                 (a_scales[r * k_blocks + kb] * b_group_scales[(j / kFp8Block) * k_blocks + kb]);
        }
        c[r * n + j] = sum;
      }
    }
  }
}

}  // namespace eep::kernels::cpu
