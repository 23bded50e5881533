#include "eep/kernels/cuda/attention.h"

namespace eep::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxHeadDim = 256;
// A lane holds pairs of elements (bf16x2) of a head's first half and the matching pairs of its
// second half: 64 elements of each half per pass over the warp.
constexpr int kMaxPasses = kMaxHeadDim / 2 / 64;

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// One warp: RMSNorm of one q or k head (sum of squares in fp32), times the norm weight, then
// RoPE (rotate_half pairs element i with i + head_dim / 2), stored as bf16 at dst.
__device__ void norm_rope_head(const bf16* __restrict__ src, const bf16* __restrict__ weight,
                               const float* cos_angle, const float* sin_angle, int head_dim,
                               float eps, bf16* __restrict__ dst, int lane) {
  const int half = head_dim / 2;
  float2 x1[kMaxPasses], x2[kMaxPasses];
  float sum_squares = 0.0f;
#pragma unroll
  for (int pass = 0; pass < kMaxPasses; ++pass) {
    const int i = 2 * lane + 64 * pass;
    x1[pass] = x2[pass] = make_float2(0.0f, 0.0f);
    if (i < half) {
      x1[pass] = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(src + i));
      x2[pass] = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(src + i + half));
      sum_squares += x1[pass].x * x1[pass].x + x1[pass].y * x1[pass].y + x2[pass].x * x2[pass].x +
                     x2[pass].y * x2[pass].y;
    }
  }
  sum_squares = warp_sum(sum_squares);
  const float scale = 1.0f / sqrtf(sum_squares / static_cast<float>(head_dim) + eps);
#pragma unroll
  for (int pass = 0; pass < kMaxPasses; ++pass) {
    const int i = 2 * lane + 64 * pass;
    if (i >= half) continue;
    const float2 w1 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(weight + i));
    const float2 w2 =
        __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(weight + i + half));
    // As the CPU: x * scale * weight, then the rotation, each product rounded on its own.
    const float a0 = __fmul_rn(__fmul_rn(x1[pass].x, scale), w1.x);
    const float a1 = __fmul_rn(__fmul_rn(x1[pass].y, scale), w1.y);
    const float b0 = __fmul_rn(__fmul_rn(x2[pass].x, scale), w2.x);
    const float b1 = __fmul_rn(__fmul_rn(x2[pass].y, scale), w2.y);
    const float c0 = cos_angle[i], c1 = cos_angle[i + 1];
    const float s0 = sin_angle[i], s1 = sin_angle[i + 1];
    const float2 out1 = make_float2(__fsub_rn(__fmul_rn(a0, c0), __fmul_rn(b0, s0)),
                                    __fsub_rn(__fmul_rn(a1, c1), __fmul_rn(b1, s1)));
    const float2 out2 = make_float2(__fadd_rn(__fmul_rn(b0, c0), __fmul_rn(a0, s0)),
                                    __fadd_rn(__fmul_rn(b1, c1), __fmul_rn(a1, s1)));
    *reinterpret_cast<__nv_bfloat162*>(dst + i) = __float22bfloat162_rn(out1);
    *reinterpret_cast<__nv_bfloat162*>(dst + i + half) = __float22bfloat162_rn(out2);
  }
}

// One CTA per token; its warps take the token's heads in turn (q heads, k heads, v heads).
__global__ void __launch_bounds__(kThreads) qkv_prepare_kernel(const QkvPrepareArgs a) {
  __shared__ float cos_angle[kMaxHeadDim / 2];
  __shared__ float sin_angle[kMaxHeadDim / 2];
  const int64_t token = blockIdx.x;
  const int head_dim = static_cast<int>(a.head_dim);
  const int num_heads = static_cast<int>(a.num_heads);
  const int num_kv_heads = static_cast<int>(a.num_kv_heads);
  const int64_t slot = a.slot_mapping[token];
  if (slot < 0) {
    // Padding: q is zeros (attention of a padding token reads it), the cache is untouched.
    bf16* q = a.q_out + token * num_heads * head_dim;
    for (int i = threadIdx.x; i < num_heads * head_dim; i += kThreads) {
      q[i] = __float2bfloat16(0.0f);
    }
    return;
  }
  const int half = head_dim / 2;
  const float position = static_cast<float>(a.positions[token]);
  for (int i = threadIdx.x; i < half; i += kThreads) {
    // As kernels/src/cpu/rope.cpp: exponent and inv_freq in fp32 (powf, nearly always correctly
    // rounded by glibc, here through double), angle = position * inv_freq in fp32, cos and sin
    // of the fp32 angle rounded from double.
    const float exponent = __fdiv_rn(static_cast<float>(2 * i), static_cast<float>(head_dim));
    const float power =
        static_cast<float>(pow(static_cast<double>(a.theta), static_cast<double>(exponent)));
    const float inv_freq = __fdiv_rn(1.0f, power);
    const float angle = __fmul_rn(position, inv_freq);
    double s, c;
    sincos(static_cast<double>(angle), &s, &c);
    cos_angle[i] = static_cast<float>(c);
    sin_angle[i] = static_cast<float>(s);
  }
  __syncthreads();
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int num_jobs = num_heads + 2 * num_kv_heads;
  const bf16* row = a.qkv + token * num_jobs * head_dim;
  for (int job = warp; job < num_jobs; job += kWarps) {
    const bf16* src = row + static_cast<int64_t>(job) * head_dim;
    if (job < num_heads) {
      bf16* dst = a.q_out + (token * num_heads + job) * head_dim;
      norm_rope_head(src, a.q_norm, cos_angle, sin_angle, head_dim, a.eps, dst, lane);
    } else if (job < num_heads + num_kv_heads) {
      const int kv_head = job - num_heads;
      bf16* dst = a.k_cache + (slot * num_kv_heads + kv_head) * head_dim;
      norm_rope_head(src, a.k_norm, cos_angle, sin_angle, head_dim, a.eps, dst, lane);
    } else {
      const int kv_head = job - num_heads - num_kv_heads;
      bf16* dst = a.v_cache + (slot * num_kv_heads + kv_head) * head_dim;
      if (lane < head_dim / 8) {
        reinterpret_cast<uint4*>(dst)[lane] = reinterpret_cast<const uint4*>(src)[lane];
      }
    }
  }
}

}  // namespace

cudaError_t qkv_prepare(const QkvPrepareArgs& args, cudaStream_t stream) {
  if (args.num_tokens < 0 || args.num_heads <= 0 || args.num_kv_heads <= 0 || args.head_dim <= 0 ||
      args.head_dim % 8 != 0 || args.head_dim > kMaxHeadDim) {
    return cudaErrorInvalidValue;
  }
  if (args.num_tokens == 0) return cudaSuccess;
  if (args.num_tokens > 0x7fffffff) return cudaErrorInvalidValue;
  qkv_prepare_kernel<<<static_cast<unsigned>(args.num_tokens), kThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace eep::kernels::cuda
