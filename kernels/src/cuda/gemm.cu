#include "eep/kernels/cuda/gemm.h"

#include "eep/kernels/cuda/grouped_gemm.h"

namespace eep::kernels::cuda {

Blas::Blas(cudaStream_t stream) : stream_(stream) {
  status_ = cublasCreate(&handle_);
  if (status_ != CUBLAS_STATUS_SUCCESS) return;
  if (cudaMalloc(&workspace_, kWorkspaceBytes) != cudaSuccess) {
    workspace_ = nullptr;
    return;
  }
  if (cudaMalloc(&offsets_, 2 * sizeof(int32_t)) != cudaSuccess) {
    offsets_ = nullptr;
    return;
  }
  status_ = cublasSetStream(handle_, stream_);
  if (status_ == CUBLAS_STATUS_SUCCESS) {
    status_ = cublasSetWorkspace(handle_, workspace_, kWorkspaceBytes);
  }
  // fp32 accumulation throughout; no reduced-precision reductions.
  if (status_ == CUBLAS_STATUS_SUCCESS) status_ = cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH);
}

Blas::~Blas() {
  if (handle_ != nullptr) cublasDestroy(handle_);
  if (workspace_ != nullptr) cudaFree(workspace_);
  if (offsets_ != nullptr) cudaFree(offsets_);
}

namespace {

cublasStatus_t to_cublas(cudaError_t err) {
  if (err == cudaSuccess) return CUBLAS_STATUS_SUCCESS;
  return err == cudaErrorInvalidValue ? CUBLAS_STATUS_INVALID_VALUE
                                      : CUBLAS_STATUS_EXECUTION_FAILED;
}

}  // namespace

cublasStatus_t Blas::matmul_nt(const bf16* a, const bf16* b, bf16* c, int64_t m, int64_t n,
                               int64_t k) {
  if (batch_invariant_) return to_cublas(dense_matmul_nt(a, b, m, n, k, c, offsets_, stream_));
  return gemm(a, b, c, CUDA_R_16BF, m, n, k, 0.0f);
}

cublasStatus_t Blas::matmul_nt(const bf16* a, const bf16* b, float* c, int64_t m, int64_t n,
                               int64_t k, float beta) {
  if (batch_invariant_) {
    return to_cublas(dense_matmul_nt(a, b, m, n, k, c, beta, offsets_, stream_));
  }
  return gemm(a, b, c, CUDA_R_32F, m, n, k, beta);
}

cublasStatus_t Blas::gemm(const bf16* a, const bf16* b, void* c, cudaDataType c_type, int64_t m,
                          int64_t n, int64_t k, float beta) {
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  // Row-major c [m, n] is column-major c^T [n, m] = b [n, k] * a^T, with b read transposed
  // from its column-major [k, n] view and a as column-major [k, m].
  const float alpha = 1.0f;
  return cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                      static_cast<int>(k), &alpha, b, CUDA_R_16BF, static_cast<int>(k), a,
                      CUDA_R_16BF, static_cast<int>(k), &beta, c, c_type, static_cast<int>(n),
                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

}  // namespace eep::kernels::cuda
