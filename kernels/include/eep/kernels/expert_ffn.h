// One SwiGLU expert on a group of rows: y = down(silu(gate(x)) * up(x)), silu(g) = g / (1 + e^-g).
// gate_proj and up_proj [intermediate, hidden], down_proj [hidden, intermediate], row-major.
// Each row's result does not depend on the other rows (see gemm.h).
#pragma once

#include <cstdint>

namespace eep::kernels::cpu {

// Floats of scratch the calls below need for num_rows rows.
int64_t expert_ffn_scratch_floats(int64_t num_rows, int64_t hidden, int64_t intermediate);

// x [num_rows, hidden] -> y [num_rows, hidden]. `scratch` holds at least
// 2 * num_rows * intermediate floats. y must not alias x or scratch.
void expert_ffn(const float* x, const float* gate_proj, const float* up_proj,
                const float* down_proj, int64_t num_rows, int64_t hidden, int64_t intermediate,
                float* scratch, float* y);

// The MoE combine in one pass: y[r, :] += row_weights[r] * expert(x[r, :]). `scratch` holds
// expert_ffn_scratch_floats(num_rows, hidden, intermediate) floats. y must not alias x or scratch.
void expert_ffn_accumulate(const float* x, const float* gate_proj, const float* up_proj,
                           const float* down_proj, const float* row_weights, int64_t num_rows,
                           int64_t hidden, int64_t intermediate, float* scratch, float* y);

}  // namespace eep::kernels::cpu
