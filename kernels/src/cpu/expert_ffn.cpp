#include "eep/kernels/expert_ffn.h"

#include <cmath>

#include "eep/kernels/gemm.h"

namespace eep::kernels::cpu {

void expert_ffn(const float* x, const float* gate_proj, const float* up_proj,
                const float* down_proj, int64_t num_rows, int64_t hidden, int64_t intermediate,
                float* scratch, float* y) {
  float* gate = scratch;
  float* up = scratch + num_rows * intermediate;
  matmul_nt(x, gate_proj, gate, num_rows, intermediate, hidden);
  matmul_nt(x, up_proj, up, num_rows, intermediate, hidden);
  for (int64_t i = 0; i < num_rows * intermediate; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];  // silu(g) * u
  }
  matmul_nt(gate, down_proj, y, num_rows, hidden, intermediate);
}

}  // namespace eep::kernels::cpu
