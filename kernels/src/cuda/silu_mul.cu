// SwiGLU's activation between the two expert GEMMs (silu_mul.h).
#include <algorithm>
#include <cstdint>

#include "eep/kernels/cuda/silu_mul.h"

namespace eep::kernels::cuda {
namespace {

bool aligned(const void* p, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

template <int kVec>
__global__ void silu_mul_kernel(const bf16* __restrict__ gate_up,
                                const int32_t* __restrict__ num_rows, int64_t max_rows,
                                int64_t intermediate, bf16* __restrict__ out) {
  const int64_t rows = *num_rows < 0 ? 0 : (*num_rows < max_rows ? *num_rows : max_rows);
  const int64_t vecs_per_row = intermediate / kVec;
  const int64_t total = rows * vecs_per_row;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t v = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; v < total;
       v += stride) {
    const int64_t row = v / vecs_per_row;
    const int64_t col = (v % vecs_per_row) * kVec;
    const bf16* const gate = gate_up + row * 2 * intermediate + col;
    alignas(16) bf16 g[kVec];
    alignas(16) bf16 u[kVec];
    alignas(16) bf16 y[kVec];
    if constexpr (kVec == 8) {
      *reinterpret_cast<uint4*>(g) = *reinterpret_cast<const uint4*>(gate);
      *reinterpret_cast<uint4*>(u) = *reinterpret_cast<const uint4*>(gate + intermediate);
    } else {
      g[0] = gate[0];
      u[0] = gate[intermediate];
    }
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      const float gf = __bfloat162float(g[i]);
      y[i] = __float2bfloat16_rn(gf / (1.0f + expf(-gf)) * __bfloat162float(u[i]));
    }
    bf16* const dst = out + row * intermediate + col;
    if constexpr (kVec == 8) {
      *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(y);
    } else {
      dst[0] = y[0];
    }
  }
}

}  // namespace

cudaError_t silu_mul(const bf16* gate_up, const int32_t* num_rows, int64_t max_rows,
                     int64_t intermediate, bf16* out, cudaStream_t stream) {
  if (max_rows < 0 || intermediate < 0) return cudaErrorInvalidValue;
  if (max_rows == 0 || intermediate == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  constexpr int64_t kMaxBlocks = 4096;  // grid-stride beyond this
  const bool vectorized = intermediate % 8 == 0 && aligned(gate_up, 16) && aligned(out, 16);
  const int64_t max_items = max_rows * (vectorized ? intermediate / 8 : intermediate);
  const int64_t blocks = std::min(kMaxBlocks, (max_items + kThreads - 1) / kThreads);
  if (vectorized) {
    silu_mul_kernel<8><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        gate_up, num_rows, max_rows, intermediate, out);
  } else {
    silu_mul_kernel<1><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        gate_up, num_rows, max_rows, intermediate, out);
  }
  return cudaGetLastError();
}

}  // namespace eep::kernels::cuda
