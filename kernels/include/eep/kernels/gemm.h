// Dense products of the model, fp32. Weights are stored as in Hugging Face checkpoints,
// [out_features, in_features], so every product is c = a * b^T.
#pragma once

#include <cstdint>

namespace eep::kernels::cpu {

// c[m, n] = sum_k a[m, k] * b[n, k]. Row-major, no aliasing. Each element is a dot product
// summed in one fixed order that does not depend on m or n, so a row's result is the same
// whatever other rows share the call (batching and expert parallelism do not change outputs).
void matmul_nt(const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t k);

// The dot product matmul_nt uses, exposed for the ops that need single rows.
float dot(const float* x, const float* y, int64_t k);

}  // namespace eep::kernels::cpu
