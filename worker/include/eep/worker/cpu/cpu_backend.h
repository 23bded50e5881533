// The CPU backend: fp32 weights in host memory, Gloo for the EP group (DESIGN.md section 5).
#pragma once

#include <memory>

#include "eep/worker/engine/backend.h"

namespace eep::worker {

std::unique_ptr<Backend> make_cpu_backend(const BackendOptions& options, const ModelConfig& config);

}  // namespace eep::worker
