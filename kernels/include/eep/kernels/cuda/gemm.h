// Dense products of the CUDA backend through cuBLAS (or, batch-invariant, dense_matmul_nt): c = a *
// b^T with row-major a [m, k] and weights b [n, k] in Hugging Face's [out_features, in_features]
// layout, bf16 inputs, fp32 accumulation, output bf16 or fp32 (c = a * b^T + beta * c for fp32, so
// a projection can add straight into the fp32 residual stream).
#pragma once

#include <cstdint>

#include <cublas_v2.h>

#include "eep/kernels/cuda/types.h"

namespace eep::kernels::cuda {

// One cuBLAS handle bound to one stream, with its own fixed workspace so that its calls can be
// captured in a CUDA graph (cuBLAS must not allocate during capture). One thread uses it.
class Blas {
 public:
  // Creates the handle and workspace on the current device. Check ok() afterwards.
  explicit Blas(cudaStream_t stream);
  ~Blas();
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;

  bool ok() const {
    return status_ == CUBLAS_STATUS_SUCCESS && workspace_ != nullptr && offsets_ != nullptr;
  }
  // From now on every product goes through dense_matmul_nt (grouped_gemm.h) instead of cuBLAS,
  // whose algorithm (and so a row's bits) depends on m: a row's result then does not depend on
  // the rows beside it (the worker's --batch-invariant).
  void set_batch_invariant(bool on) { batch_invariant_ = on; }
  cudaStream_t stream() const { return stream_; }

  // c [m, n] bf16 = a [m, k] * b [n, k]^T.
  cublasStatus_t matmul_nt(const bf16* a, const bf16* b, bf16* c, int64_t m, int64_t n, int64_t k);
  // c [m, n] fp32 = a [m, k] * b [n, k]^T + beta * c.
  cublasStatus_t matmul_nt(const bf16* a, const bf16* b, float* c, int64_t m, int64_t n, int64_t k,
                           float beta);

  static constexpr size_t kWorkspaceBytes = 32 << 20;

 private:
  cublasStatus_t gemm(const bf16* a, const bf16* b, void* c, cudaDataType c_type, int64_t m,
                      int64_t n, int64_t k, float beta);

  cudaStream_t stream_;
  cublasHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  int32_t* offsets_ = nullptr;  // dense_matmul_nt's scratch
  bool batch_invariant_ = false;
  cublasStatus_t status_ = CUBLAS_STATUS_NOT_INITIALIZED;
};

}  // namespace eep::kernels::cuda
