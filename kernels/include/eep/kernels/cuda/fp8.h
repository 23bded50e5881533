// Block-scaled FP8 on the GPU (the contract of eep/kernels/fp8.h, the CPU reference): activations
// quantized per row in blocks of 128 columns, and the experts' grouped product on e4m3 codes with
// the checkpoints' 128 x 128 weight scales (grouped_gemm.cu runs it on the bf16 product's tiles,
// mma.sync m16n8k32 e4m3, the stage's products scaled into fp32 after every block of 128).
#pragma once

#include <cstdint>

#include "eep/kernels/cuda/grouped_gemm.h"
#include "eep/kernels/cuda/types.h"

namespace eep::kernels::cuda {

// Rows [0, rows) of x [rows, k] (bf16, k a multiple of 128) to codes q [rows, k] and scales
// [rows, k / 128], as kernels::cpu::quantize_fp8_rows does with x in fp32: the same codes and
// scales, bit for bit. num_valid_rows: nullptr, or a device count below which rows are quantized
// (rows at or past it are not touched; the MoE's row count lives on the device).
cudaError_t quantize_fp8_rows(const bf16* x, int64_t rows, int64_t k, const int32_t* num_valid_rows,
                              uint8_t* q, float* scales, cudaStream_t stream);

// The experts' product on codes: for every group g, c[r, :] for r in [offsets[g], offsets[g+1])
// as kernels::cpu::grouped_matmul_nt_fp8, rounded to bf16 (the inner sums of 32 codes in the
// tensor cores' order, so within fp32 rounding of the CPU's, not bitwise). a [max_rows, k] with
// a_scales [max_rows, k / 128]; b [num_groups, n, k] with b_scales [num_groups, n / 128, k / 128];
// offsets on the device. n and k multiples of 128; a, b 16-byte aligned. tile: kAuto, kRows32 or
// kRows64 (kRows128 is cudaErrorInvalidValue). Graph-capturable, as grouped_matmul_nt.
cudaError_t grouped_matmul_nt_fp8(const uint8_t* a, const float* a_scales, const uint8_t* b,
                                  const float* b_scales, const int32_t* offsets, int64_t num_groups,
                                  int64_t max_rows, int64_t n, int64_t k, bf16* c,
                                  cudaStream_t stream,
                                  GroupedGemmTile tile = GroupedGemmTile::kAuto);

}  // namespace eep::kernels::cuda
