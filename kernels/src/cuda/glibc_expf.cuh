// expf computed as glibc (2.28 and later) computes it on x86-64 CPUs with FMA (the variant its
// ifunc picks on any server of the last decade): the algorithm of ARM's optimized-routines,
// 2^(k/32) from a table times a cubic in double, each double operation (and each fused
// multiply-add) as the compiled library rounds it. Bit for bit the CPU's std::exp(float), so the
// sampler's probabilities, their order and the drawn token match kernels::cpu::sample_token.
// Checked against the host's expf on every float (tests/gpu test "sampling_exp" on the GPU
// machine; the development machine's glibc 2.36 exhaustively).
#pragma once

#include <cstdint>

#ifdef __CUDACC__
#define EEP_HOST_DEVICE __host__ __device__
#else
#define EEP_HOST_DEVICE
#include <cmath>
#include <cstring>
#endif

namespace eep::kernels::cuda::glibc {

// 2^(i/32) as double bits, minus i << 47 (the exponent bits k / 32 adds back). One copy for
// the host (the test), one in device memory.
#define EEP_GLIBC_EXP2_TABLE                                                                      \
  0x3ff0000000000000ull, 0x3fefd9b0d3158574ull, 0x3fefb5586cf9890full, 0x3fef9301d0125b51ull,     \
      0x3fef72b83c7d517bull, 0x3fef54873168b9aaull, 0x3fef387a6e756238ull, 0x3fef1e9df51fdee1ull, \
      0x3fef06fe0a31b715ull, 0x3feef1a7373aa9cbull, 0x3feedea64c123422ull, 0x3feece086061892dull, \
      0x3feebfdad5362a27ull, 0x3feeb42b569d4f82ull, 0x3feeab07dd485429ull, 0x3feea47eb03a5585ull, \
      0x3feea09e667f3bcdull, 0x3fee9f75e8ec5f74ull, 0x3feea11473eb0187ull, 0x3feea589994cce13ull, \
      0x3feeace5422aa0dbull, 0x3feeb737b0cdc5e5ull, 0x3feec49182a3f090ull, 0x3feed503b23e255dull, \
      0x3feee89f995ad3adull, 0x3feeff76f2fb5e47ull, 0x3fef199bdd85529cull, 0x3fef3720dcef9069ull, \
      0x3fef5818dcfba487ull, 0x3fef7c97337b9b5full, 0x3fefa4afa2a490daull, 0x3fefd0765b6e4540ull,

inline constexpr uint64_t kExp2TableHost[32] = {EEP_GLIBC_EXP2_TABLE};
#ifdef __CUDACC__
static __device__ const uint64_t kExp2TableDevice[32] = {EEP_GLIBC_EXP2_TABLE};
#endif
inline constexpr double kInvLn2x32 = 0x1.71547652b82fep+5;  // 32 / ln 2
inline constexpr double kShift = 0x1.8p+52;                 // rounds to an integer when added
inline constexpr double kPoly0 = 0x1.c6af84b912394p-20;     // 2^(r/32) ~ 1 + p2 r + p1 r^2 + p0 r^3
inline constexpr double kPoly1 = 0x1.ebfce50fac4f3p-13;
inline constexpr double kPoly2 = 0x1.62e42ff0c52d6p-6;

EEP_HOST_DEVICE inline double fma_rn(double a, double b, double c) {
#ifdef __CUDA_ARCH__
  return __fma_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
EEP_HOST_DEVICE inline double mul_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
EEP_HOST_DEVICE inline double sub_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
EEP_HOST_DEVICE inline uint64_t bits_of(double x) {
#ifdef __CUDA_ARCH__
  return static_cast<uint64_t>(__double_as_longlong(x));
#else
  uint64_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}
EEP_HOST_DEVICE inline double double_of(uint64_t u) {
#ifdef __CUDA_ARCH__
  return __longlong_as_double(static_cast<long long>(u));
#else
  double x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}
EEP_HOST_DEVICE inline uint32_t bits_of(float x) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}
EEP_HOST_DEVICE inline float to_float_rn(double x) {
#ifdef __CUDA_ARCH__
  return __double2float_rn(x);
#else
  return static_cast<float>(x);
#endif
}

EEP_HOST_DEVICE inline float expf_glibc(float x) {
  const uint32_t abstop = (bits_of(x) >> 20) & 0x7ff;
  if (abstop >= 0x42b) {  // |x| >= 88, inf or nan
    if (bits_of(x) == 0xff800000u) return 0.0f;
    if (abstop >= 0x7f8) return x + x;
    if (x > 0x1.62e42ep6f) return __builtin_huge_valf();  // overflow
    if (x < -0x1.9fe368p6f) return 0.0f;                  // underflow
    if (x < -0x1.9d1d9ep6f) return 0x1p-149f;             // 0x1.4p-75f squared, rounded
  }
  // x * 32 / ln2 = k + r, r in [-1/2, 1/2]; exp(x) = 2^(k/32) * 2^(r/32).
  const double xd = x;
  const double shifted = fma_rn(kInvLn2x32, xd, kShift);
  const uint64_t ki = bits_of(shifted);
  const double kd = sub_rn(shifted, kShift);
  const double r = fma_rn(kInvLn2x32, xd, -kd);
#ifdef __CUDA_ARCH__
  const uint64_t table_bits = kExp2TableDevice[ki % 32];
#else
  const uint64_t table_bits = kExp2TableHost[ki % 32];
#endif
  const double scale = double_of(table_bits + (ki << 47));
  const double z = fma_rn(r, kPoly0, kPoly1);
  const double r2 = mul_rn(r, r);
  double y = fma_rn(r, kPoly2, 1.0);
  y = fma_rn(z, r2, y);
  return to_float_rn(mul_rn(y, scale));
}

}  // namespace eep::kernels::cuda::glibc
