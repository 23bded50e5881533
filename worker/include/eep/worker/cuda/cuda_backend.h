// The CUDA backend (DESIGN.md section 5): one GPU per rank, bf16 weights on it, NCCL for the EP
// group, the KV cache sized from the memory the rest leaves, decode steps from CUDA graphs.
#pragma once

#include <chrono>
#include <memory>

#include "eep/common/status.h"
#include "eep/worker/engine/backend.h"

namespace eep::worker {

// Selects the device on the calling thread (the engine's) and creates the stream every step runs
// on. kFailedPrecondition when the device does not exist.
Result<std::unique_ptr<Backend>> make_cuda_backend(const BackendOptions& options,
                                                   const ModelConfig& config);

}  // namespace eep::worker
