// One SwiGLU expert on a group of rows: y = down(silu(gate(x)) * up(x)).
// gate_proj and up_proj [intermediate, hidden], down_proj [hidden, intermediate], row-major.
#pragma once

#include <cstdint>

namespace eep::kernels::cpu {

// x [num_rows, hidden] -> y [num_rows, hidden]. `scratch` holds 2 * num_rows * intermediate
// floats. Each row's result does not depend on the other rows.
void expert_ffn(const float* x, const float* gate_proj, const float* up_proj,
                const float* down_proj, int64_t num_rows, int64_t hidden, int64_t intermediate,
                float* scratch, float* y);

}  // namespace eep::kernels::cpu
