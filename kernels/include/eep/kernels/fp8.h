// FP8 (e4m3fn) numbers and the block-scaled FP8 products of fine-grained FP8 checkpoints
// (DeepSeek-V3, Qwen3-*-FP8), fp32 on the CPU: the reference of the CUDA kernels in
// eep/kernels/cuda/fp8.h.
//
// Scales, as in those checkpoints: a weight [n, k] holds one fp32 scale per 128 x 128 block
// (`weight_scale_inv`, [n / 128, k / 128]); an activation, quantized as it is used ("dynamic"
// activations), one per row and 128 columns ([rows, k / 128]). A value is its code's number
// times its block's scale.
#pragma once

#include <cstdint>

namespace eep::kernels::cpu {

inline constexpr float kF8E4M3Max = 448.0f;
// The block of a scale along k (and along n for weights).
inline constexpr int64_t kFp8Block = 128;

// Exact (every e4m3fn value is an fp32 value); 0x7f and 0xff give a quiet NaN of that sign.
float fp8_e4m3_to_fp32(uint8_t bits);
// Round to nearest, ties to even, subnormals included. Finite values beyond the largest finite
// value saturate to +-448, as quantizers clamp before converting; NaN and infinities (which the
// format lacks) give NaN: 0x7f, or 0xff when negative.
uint8_t fp32_to_fp8_e4m3(float value);

// Quantizes the rows of x [rows, k] (k a multiple of 128) in blocks of 128 columns: the block's
// scale is its largest magnitude / 448 (1 for an all-zero block), each code the nearest e4m3 of
// value / scale. q [rows, k], scales [rows, k / 128].
void quantize_fp8_rows(const float* x, int64_t rows, int64_t k, uint8_t* q, float* scales);

// For every group g: c[r, j] = sum over the 128-column blocks kb of
//   a_scales[r, kb] * b_scales[g, j / 128, kb] * sum_{p in kb} a[r, p] * b[g, j, p]
// (codes as numbers, the inner sums in fp32 in increasing p), for r in [offsets[g],
// offsets[g + 1]). a [rows, k] with a_scales [rows, k / 128]; b [num_groups, n, k] with b_scales
// [num_groups, n / 128, k / 128]; c [rows, n]; offsets on the host. n and k multiples of 128.
void grouped_matmul_nt_fp8(const uint8_t* a, const float* a_scales, const uint8_t* b,
                           const float* b_scales, const int32_t* offsets, int64_t num_groups,
                           int64_t n, int64_t k, float* c);

}  // namespace eep::kernels::cpu
