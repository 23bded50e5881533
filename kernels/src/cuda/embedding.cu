#include "eep/kernels/cuda/embedding.h"

namespace eep::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// One CTA per token (grid-strided over tokens). Rows of 8 bf16 -> 8 floats when hidden allows.
template <bool kVectorized>
__global__ void __launch_bounds__(kThreads)
    embedding_kernel(const bf16* __restrict__ table, int64_t vocab, const int32_t* __restrict__ ids,
                     int64_t num_tokens, int64_t hidden, float* __restrict__ out) {
  for (int64_t t = blockIdx.x; t < num_tokens; t += gridDim.x) {
    const int32_t id = ids[t];
    const bool valid = id >= 0 && id < vocab;
    const bf16* src = table + static_cast<int64_t>(valid ? id : 0) * hidden;
    float* dst = out + t * hidden;
    if constexpr (kVectorized) {
      for (int64_t i = threadIdx.x * 8; i < hidden; i += kThreads * 8) {
        float4 lo = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        float4 hi = lo;
        if (valid) {
          const uint4 raw = *reinterpret_cast<const uint4*>(src + i);
          const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&raw);
          const float2 a = __bfloat1622float2(pairs[0]);
          const float2 b = __bfloat1622float2(pairs[1]);
          const float2 c = __bfloat1622float2(pairs[2]);
          const float2 d = __bfloat1622float2(pairs[3]);
          lo = make_float4(a.x, a.y, b.x, b.y);
          hi = make_float4(c.x, c.y, d.x, d.y);
        }
        *reinterpret_cast<float4*>(dst + i) = lo;
        *reinterpret_cast<float4*>(dst + i + 4) = hi;
      }
    } else {
      for (int64_t i = threadIdx.x; i < hidden; i += kThreads) {
        dst[i] = valid ? __bfloat162float(src[i]) : 0.0f;
      }
    }
  }
}

}  // namespace

cudaError_t embedding(const bf16* table, int64_t vocab, const int32_t* ids, int64_t num_tokens,
                      int64_t hidden, float* out, cudaStream_t stream) {
  if (num_tokens < 0 || hidden < 0 || vocab < 0) return cudaErrorInvalidValue;
  if (num_tokens == 0 || hidden == 0) return cudaSuccess;
  const unsigned grid = static_cast<unsigned>(num_tokens < 65535 ? num_tokens : 65535);
  const bool vectorized = hidden % 8 == 0 && reinterpret_cast<uintptr_t>(table) % 16 == 0 &&
                          reinterpret_cast<uintptr_t>(out) % 16 == 0;
  if (vectorized) {
    embedding_kernel<true>
        <<<grid, kThreads, 0, stream>>>(table, vocab, ids, num_tokens, hidden, out);
  } else {
    embedding_kernel<false>
        <<<grid, kThreads, 0, stream>>>(table, vocab, ids, num_tokens, hidden, out);
  }
  return cudaGetLastError();
}

}  // namespace eep::kernels::cuda
