#include "eep/kernels/cuda/rmsnorm.h"

namespace eep::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// One CTA per output row (grid-strided). The sum of squares is reduced in a fixed order, so a
// row's result does not depend on the other rows or on the launch.
__global__ void __launch_bounds__(kThreads)
    rmsnorm_kernel(const float* __restrict__ x, const int32_t* __restrict__ rows,
                   const bf16* __restrict__ weight, bf16* __restrict__ out, int64_t num_rows,
                   int64_t hidden, float eps) {
  __shared__ float warp_sums[kWarps];
  __shared__ float row_scale;
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  for (int64_t r = blockIdx.x; r < num_rows; r += gridDim.x) {
    const int64_t in_row = rows != nullptr ? rows[r] : r;
    bf16* dst = out + r * hidden;
    if (in_row < 0) {
      for (int64_t i = threadIdx.x; i < hidden; i += kThreads) dst[i] = __float2bfloat16(0.0f);
      continue;
    }
    const float* src = x + in_row * hidden;
    float sum_squares = 0.0f;
    for (int64_t i = threadIdx.x; i < hidden; i += kThreads) sum_squares += src[i] * src[i];
    for (int offset = 16; offset > 0; offset /= 2) {
      sum_squares += __shfl_xor_sync(0xffffffffu, sum_squares, offset);
    }
    if (lane == 0) warp_sums[warp] = sum_squares;
    __syncthreads();
    if (threadIdx.x == 0) {
      float total = 0.0f;
      for (int w = 0; w < kWarps; ++w) total += warp_sums[w];
      row_scale = 1.0f / sqrtf(total / static_cast<float>(hidden) + eps);
    }
    __syncthreads();
    const float scale = row_scale;
    for (int64_t i = threadIdx.x; i < hidden; i += kThreads) {
      dst[i] = __float2bfloat16(src[i] * scale * __bfloat162float(weight[i]));
    }
    // warp_sums and row_scale are rewritten by the next row only after every thread read them.
    __syncthreads();
  }
}

}  // namespace

cudaError_t rmsnorm(const float* x, const int32_t* rows, const bf16* weight, bf16* out,
                    int64_t num_rows, int64_t hidden, float eps, cudaStream_t stream) {
  if (num_rows < 0 || hidden <= 0) return cudaErrorInvalidValue;
  if (num_rows == 0) return cudaSuccess;
  const unsigned grid = static_cast<unsigned>(num_rows < 65535 ? num_rows : 65535);
  rmsnorm_kernel<<<grid, kThreads, 0, stream>>>(x, rows, weight, out, num_rows, hidden, eps);
  return cudaGetLastError();
}

}  // namespace eep::kernels::cuda
