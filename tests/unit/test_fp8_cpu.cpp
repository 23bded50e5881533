// The CPU reference of block-scaled FP8 (eep/kernels/fp8.h): activations quantized per row and
// 128 columns, and the grouped product of codes with their scales, against plain fp32 math on the
// dequantized values.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "eep/kernels/fp8.h"
#include "eep/kernels/gemm.h"

using namespace eep::kernels::cpu;

namespace {

std::vector<float> uniform_values(size_t n, uint64_t seed, float scale) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

}  // namespace

TEST_CASE("quantize_fp8_rows: a scale per row and 128 columns, codes within e4m3's rounding",
          "[fp8]") {
  const int64_t rows = 3;
  const int64_t k = 256;
  std::vector<float> x = uniform_values(rows * k, 5, 10.0f);
  for (int64_t i = 0; i < 128; ++i) x[1 * k + 128 + i] = 0.0f;  // an all-zero block
  x[2 * k + 3] = -1000.0f;                                      // the block's largest magnitude
  std::vector<uint8_t> q(rows * k);
  std::vector<float> scales(rows * 2);
  quantize_fp8_rows(x.data(), rows, k, q.data(), scales.data());
  CHECK(scales[3] == 1.0f);
  CHECK(scales[4] == 1000.0f / kF8E4M3Max);
  CHECK(q[2 * k + 3] == 0xfe);  // -448
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t kb = 0; kb < 2; ++kb) {
      float amax = 0.0f;
      for (int64_t i = 0; i < 128; ++i) amax = std::max(amax, std::fabs(x[r * k + kb * 128 + i]));
      if (amax > 0.0f) CHECK(scales[r * 2 + kb] == amax / kF8E4M3Max);
      for (int64_t i = 0; i < 128; ++i) {
        const int64_t idx = r * k + kb * 128 + i;
        const float back = fp8_e4m3_to_fp32(q[idx]) * scales[r * 2 + kb];
        // Half a unit of e4m3's 3-bit mantissa (2^-4 relative), or of its smallest subnormal.
        CHECK(std::fabs(back - x[idx]) <=
              std::max(std::fabs(x[idx]) / 16.0f, scales[r * 2 + kb] * 0.001f));
      }
    }
  }
}

TEST_CASE("grouped_matmul_nt_fp8 is the fp32 product of the dequantized codes", "[fp8]") {
  const int64_t n = 256;
  const int64_t k = 384;
  const std::vector<int32_t> offsets = {0, 3, 3, 7};  // an empty group in the middle
  const int64_t rows = offsets.back();
  const int64_t groups = 3;
  std::vector<uint8_t> a(rows * k);
  std::vector<float> a_scales(rows * (k / 128));
  const std::vector<float> x = uniform_values(rows * k, 1, 4.0f);
  quantize_fp8_rows(x.data(), rows, k, a.data(), a_scales.data());
  // Weights: quantized per row too (any positive scales will do), then given 128 x 128 scales
  // that differ per block.
  std::vector<uint8_t> b(groups * n * k);
  std::vector<float> unused(groups * n * (k / 128));
  const std::vector<float> w = uniform_values(groups * n * k, 2, 0.05f);
  quantize_fp8_rows(w.data(), groups * n, k, b.data(), unused.data());
  std::vector<float> b_scales(groups * (n / 128) * (k / 128));
  for (size_t i = 0; i < b_scales.size(); ++i) b_scales[i] = 0.001f * static_cast<float>(i + 1);

  std::vector<float> c(rows * n);
  grouped_matmul_nt_fp8(a.data(), a_scales.data(), b.data(), b_scales.data(), offsets.data(),
                        groups, n, k, c.data());
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t r = offsets[g]; r < offsets[g + 1]; ++r) {
      for (int64_t j = 0; j < n; ++j) {
        double expected = 0.0;
        for (int64_t p = 0; p < k; ++p) {
          const double av = fp8_e4m3_to_fp32(a[r * k + p]) * a_scales[r * (k / 128) + p / 128];
          const double bv = fp8_e4m3_to_fp32(b[(g * n + j) * k + p]) *
                            b_scales[(g * (n / 128) + j / 128) * (k / 128) + p / 128];
          expected += av * bv;
        }
        CHECK(c[r * n + j] == Approx(expected).epsilon(1e-4).margin(1e-6));
      }
    }
  }
}
