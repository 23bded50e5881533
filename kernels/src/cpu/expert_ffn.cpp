#include "eep/kernels/expert_ffn.h"

#include <cmath>

#include "eep/kernels/gemm.h"

namespace eep::kernels::cpu {
namespace {

// scratch [2 * num_rows * intermediate] -> its first num_rows * intermediate floats hold
// silu(gate(x)) * up(x).
float* gated_activation(const float* x, const float* gate_proj, const float* up_proj,
                        int64_t num_rows, int64_t hidden, int64_t intermediate, float* scratch) {
  float* gate = scratch;
  float* up = scratch + num_rows * intermediate;
  matmul_nt(x, gate_proj, gate, num_rows, intermediate, hidden);
  matmul_nt(x, up_proj, up, num_rows, intermediate, hidden);
  for (int64_t i = 0; i < num_rows * intermediate; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
  return gate;
}

}  // namespace

int64_t expert_ffn_scratch_floats(int64_t num_rows, int64_t hidden, int64_t intermediate) {
  return num_rows * (2 * intermediate + hidden);
}

void expert_ffn(const float* x, const float* gate_proj, const float* up_proj,
                const float* down_proj, int64_t num_rows, int64_t hidden, int64_t intermediate,
                float* scratch, float* y) {
  const float* act =
      gated_activation(x, gate_proj, up_proj, num_rows, hidden, intermediate, scratch);
  matmul_nt(act, down_proj, y, num_rows, hidden, intermediate);
}

void expert_ffn_accumulate(const float* x, const float* gate_proj, const float* up_proj,
                           const float* down_proj, const float* row_weights, int64_t num_rows,
                           int64_t hidden, int64_t intermediate, float* scratch, float* y) {
  const float* act =
      gated_activation(x, gate_proj, up_proj, num_rows, hidden, intermediate, scratch);
  float* down = scratch + 2 * num_rows * intermediate;
  matmul_nt(act, down_proj, down, num_rows, hidden, intermediate);
  for (int64_t r = 0; r < num_rows; ++r) {
    const float w = row_weights[r];
    for (int64_t i = 0; i < hidden; ++i) y[r * hidden + i] += w * down[r * hidden + i];
  }
}

}  // namespace eep::kernels::cpu
