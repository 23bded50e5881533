#include "eep/kernels/gemm.h"

namespace eep::kernels::cpu {

float dot(const float* x, const float* y, int64_t k) {
  // Eight independent partial sums (the compiler vectorises them), combined in a fixed tree.
  float partial[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    for (int lane = 0; lane < 8; ++lane) partial[lane] += x[i + lane] * y[i + lane];
  }
  for (int lane = 0; i < k; ++i, ++lane) partial[lane] += x[i] * y[i];
  return ((partial[0] + partial[4]) + (partial[1] + partial[5])) +
         ((partial[2] + partial[6]) + (partial[3] + partial[7]));
}

void matmul_nt(const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t k) {
  // Blocks of rows of b stay in cache while every row of a passes over them.
  constexpr int64_t kBlockN = 64;
  for (int64_t j0 = 0; j0 < n; j0 += kBlockN) {
    const int64_t j1 = j0 + kBlockN < n ? j0 + kBlockN : n;
    for (int64_t i = 0; i < m; ++i) {
      const float* a_row = a + i * k;
      float* c_row = c + i * n;
      for (int64_t j = j0; j < j1; ++j) c_row[j] = dot(a_row, b + j * k, k);
    }
  }
}

}  // namespace eep::kernels::cpu
