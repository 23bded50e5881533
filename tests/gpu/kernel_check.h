// Comparison helpers of the CUDA kernel tests (test_kernels_cuda.cpp, test_attention_cuda.cpp,
// test_sampling_cuda.cpp): on failure they name the first element off, so one run on the GPU
// machine says what is wrong.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "gpu_test_util.h"

namespace eep::gpu_test {

inline uint16_t bf16_bits(__nv_bfloat16 x) {
  uint16_t u;
  std::memcpy(&u, &x, sizeof(u));
  return u;
}

// CHECKs max_rel_error(actual, expected) <= kBf16Tolerance; on failure reports the first element
// beyond it as (row, col) of rows of `row_size` elements.
inline void check_close(const std::vector<float>& actual, const std::vector<float>& expected,
                        int64_t row_size, const std::string& what) {
  const double err = max_rel_error(actual, expected);
  INFO(what << ": max_rel_error " << err << " (tolerance " << kBf16Tolerance << ")");
  if (err <= kBf16Tolerance) {
    CHECK(err <= kBf16Tolerance);
    return;
  }
  REQUIRE(actual.size() == expected.size());
  double scale = 1e-6;
  for (float e : expected) scale = std::max(scale, static_cast<double>(std::fabs(e)));
  for (size_t i = 0; i < actual.size(); ++i) {
    if (!std::isfinite(actual[i]) || std::fabs(actual[i] - expected[i]) / scale > kBf16Tolerance) {
      INFO("first mismatch at row " << static_cast<int64_t>(i) / row_size << " col "
                                    << static_cast<int64_t>(i) % row_size << ": got " << actual[i]
                                    << " expected " << expected[i] << " (max |expected| " << scale
                                    << ")");
      CHECK(err <= kBf16Tolerance);
      return;
    }
  }
}

}  // namespace eep::gpu_test
