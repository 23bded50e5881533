// CUDA and cuBLAS results as Status values: a failed call is kInternal naming the call and the
// CUDA error, so the daemon reports it instead of crashing.
#pragma once

#include <string>
#include <string_view>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "eep/common/status.h"

namespace eep::worker {

inline Status cuda_status(cudaError_t err, std::string_view what) {
  if (err == cudaSuccess) return Status::ok();
  return error(ErrorCode::kInternal, std::string(what) + ": " + cudaGetErrorName(err) + " (" +
                                         cudaGetErrorString(err) + ")");
}

inline Status cublas_status(cublasStatus_t status, std::string_view what) {
  if (status == CUBLAS_STATUS_SUCCESS) return Status::ok();
  return error(ErrorCode::kInternal, std::string(what) + ": " + cublasGetStatusName(status) + " (" +
                                         cublasGetStatusString(status) + ")");
}

}  // namespace eep::worker

#define EEP_CUDA_RETURN_IF_ERROR(expr) \
  EEP_RETURN_IF_ERROR(::eep::worker::cuda_status((expr), #expr))
#define EEP_CUBLAS_RETURN_IF_ERROR(expr) \
  EEP_RETURN_IF_ERROR(::eep::worker::cublas_status((expr), #expr))
