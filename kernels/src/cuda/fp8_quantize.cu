// Activations to FP8 codes: one warp per (row, block of 128 columns), four values per lane. The
// block's largest magnitude (a warp max, exact in any order) gives the scale amax / 448 (1 for an
// all-zero block), and each value the e4m3 code of value / scale, rounded to nearest even with
// finite values saturating to +-448 (the CPU's fp32_to_fp8_e4m3, NaN included).
#include <cuda_fp8.h>

#include "eep/kernels/cuda/fp8.h"

namespace eep::kernels::cuda {
namespace {

constexpr int kBlock = 128;
constexpr int kWarpsPerCta = 8;
constexpr float kE4M3Max = 448.0f;

__global__ void __launch_bounds__(kWarpsPerCta * 32)
    quantize_fp8_rows_kernel(const bf16* __restrict__ x, int64_t rows, int64_t k,
                             const int32_t* __restrict__ num_valid_rows, uint8_t* __restrict__ q,
                             float* __restrict__ scales) {
  const int64_t k_blocks = k / kBlock;
  const int64_t block = static_cast<int64_t>(blockIdx.x) * kWarpsPerCta + threadIdx.x / 32;
  const int64_t row = block / k_blocks;
  const int64_t limit =
      num_valid_rows != nullptr ? min(rows, static_cast<int64_t>(*num_valid_rows)) : rows;
  if (row >= limit) return;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int64_t first = row * k + (block % k_blocks) * kBlock + 4 * lane;
  // Four bf16 (8 bytes) per lane.
  const uint2 raw = *reinterpret_cast<const uint2*>(x + first);
  const float v[4] = {__uint_as_float(raw.x << 16), __uint_as_float(raw.x & 0xffff0000u),
                      __uint_as_float(raw.y << 16), __uint_as_float(raw.y & 0xffff0000u)};
  float amax = fmaxf(fmaxf(fabsf(v[0]), fabsf(v[1])), fmaxf(fabsf(v[2]), fabsf(v[3])));
#pragma unroll
  for (int mask = 16; mask > 0; mask >>= 1) {
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, mask));
  }
  const float scale = amax > 0.0f ? __fdiv_rn(amax, kE4M3Max) : 1.0f;
  uint32_t codes = 0;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const __nv_fp8_storage_t code =
        __nv_cvt_float_to_fp8(__fdiv_rn(v[i], scale), __NV_SATFINITE, __NV_E4M3);
    codes |= static_cast<uint32_t>(code) << (8 * i);
  }
  *reinterpret_cast<uint32_t*>(q + first) = codes;
  if (lane == 0) scales[block] = scale;
}

}  // namespace

cudaError_t quantize_fp8_rows(const bf16* x, int64_t rows, int64_t k, const int32_t* num_valid_rows,
                              uint8_t* q, float* scales, cudaStream_t stream) {
  if (rows < 0 || k <= 0 || k % kBlock != 0) return cudaErrorInvalidValue;
  if (reinterpret_cast<uintptr_t>(x) % 8 != 0 || reinterpret_cast<uintptr_t>(q) % 4 != 0) {
    return cudaErrorInvalidValue;
  }
  const int64_t num_blocks = rows * (k / kBlock);
  if (num_blocks == 0) return cudaSuccess;
  const int64_t grid = (num_blocks + kWarpsPerCta - 1) / kWarpsPerCta;
  if (grid > INT32_MAX) return cudaErrorInvalidValue;
  quantize_fp8_rows_kernel<<<static_cast<unsigned>(grid), kWarpsPerCta * 32, 0, stream>>>(
      x, rows, k, num_valid_rows, q, scales);
  return cudaGetLastError();
}

}  // namespace eep::kernels::cuda
