// Dense products of the model, fp32. Weights are stored as in Hugging Face checkpoints,
// [out_features, in_features], so every product is c = a * b^T.
//
// Summation order (the contract that makes results independent of batching): every element
// c[i, j] = dot(a[i, :], b[j, :]) is computed as
//   lane l (0..7) accumulates a[i, p] * b[j, p] for p = l, l + 8, l + 16, ... < k in increasing p,
//     each step one fused multiply-add (rounded once), starting from +0;
//   q[l] = lane[l] + lane[l + 4] for l < 4;  result = (q[0] + q[2]) + (q[1] + q[3]).
// Every code path (AVX2 or portable) follows exactly this order, so a row's result is bit for bit
// the same whatever the other rows of the call, the blocking, the thread split or the CPU (with
// hardware FMA or not), and dot() gives the same bits as one element of matmul_nt.
#pragma once

#include <cstdint>

namespace eep::kernels::cpu {

// c[m, n] = sum_k a[m, k] * b[n, k]. Row-major and contiguous: a [m, k], b [n, k], c [m, n];
// c must not alias a or b. Large products are split over the columns of c across
// gemm_num_threads() threads (the calling thread takes part); small ones run on the caller.
void matmul_nt(const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t k);

// The dot product matmul_nt uses, exposed for the ops that need single rows.
float dot(const float* x, const float* y, int64_t k);

// Threads a large matmul_nt may use (>= 1). Default: std::thread::hardware_concurrency(). A
// process that runs beside other ranks on the same cores should lower it (for example
// cores / ranks on the host). Safe to call from any thread; takes effect on the next call.
void set_gemm_num_threads(int num_threads);
int gemm_num_threads();

}  // namespace eep::kernels::cpu
