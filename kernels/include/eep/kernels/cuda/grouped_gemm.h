// The experts of a MoE layer as one grouped GEMM (no loop of per-expert launches): the rows of
// every expert sit contiguously in one activation matrix, expert g's rows at
// [offsets[g], offsets[g + 1]), and each group multiplies by its own weight matrix. The row
// counts live in device memory, so one launch (and one captured graph node) serves any split of
// rows over experts. CPU contract: expert g's rows equal kernels::cpu::matmul_nt of those rows
// with b[g] (inputs rounded to bf16, output rounded to bf16).
#pragma once

#include <cstdint>

#include "eep/kernels/cuda/types.h"

namespace eep::kernels::cuda {

// For every group g < num_groups: c[r, :] = a[r, :] * b[g]^T for r in [offsets[g], offsets[g+1]).
// a [max_rows, k], b [num_groups, n, k] (Hugging Face [out, in] layout), c [max_rows, n]; bf16
// with fp32 accumulation. offsets: device, num_groups + 1 non-decreasing values from 0, the last
// <= max_rows. Rows at or beyond offsets[num_groups] are neither read nor written. A row's result
// does not depend on the other rows (fixed summation order over k), so it is the same whichever
// rows share its launch. n and k must be multiples of 64.
cudaError_t grouped_matmul_nt(const bf16* a, const bf16* b, const int32_t* offsets,
                              int64_t num_groups, int64_t max_rows, int64_t n, int64_t k, bf16* c,
                              cudaStream_t stream);

// The tile shapes grouped_matmul_nt chooses among, by rows of c per tile. kAuto (what the
// overload above uses) picks on the device from the actual row counts (least padded work); the
// others are there so that tests and benchmarks can run each variant. kRows64 and kRows128 need
// n to be a multiple of 128 (cudaErrorInvalidValue otherwise; kAuto then uses kRows32). Every
// variant gives bitwise the same results. Also cudaErrorInvalidValue: n or k not a multiple of
// 64, a or b not 16-byte aligned, c not 4-byte aligned, a size beyond 32-bit indices.
// The first call per device and variant sets the kernel's shared-memory limit
// (cudaFuncSetAttribute); later calls only launch.
enum class GroupedGemmTile { kAuto, kRows32, kRows64, kRows128 };

cudaError_t grouped_matmul_nt(const bf16* a, const bf16* b, const int32_t* offsets,
                              int64_t num_groups, int64_t max_rows, int64_t n, int64_t k, bf16* c,
                              cudaStream_t stream, GroupedGemmTile tile);

// Dense products whose rows do not depend on the other rows (the batch-invariant forward, the
// worker's --batch-invariant): c [m, n] = a [m, k] * b [n, k]^T with fp32 accumulation in a fixed
// order, so a row's result is bitwise the same whatever m is and whatever rows are beside it.
// n and k multiples of 64: grouped_matmul_nt's tiles with one group (offsets: a device scratch
// of 2 int32, written on the stream first, so that a captured graph keeps its own m); otherwise
// (small n, such as a router's) one warp per output element. k a multiple of 8; a, b 16-byte
// aligned, c 8-byte aligned. The fp32 form stores (beta 0) or adds into c (beta 1, a projection
// into the residual stream); other betas are cudaErrorInvalidValue.
cudaError_t dense_matmul_nt(const bf16* a, const bf16* b, int64_t m, int64_t n, int64_t k, bf16* c,
                            int32_t* offsets, cudaStream_t stream);
cudaError_t dense_matmul_nt(const bf16* a, const bf16* b, int64_t m, int64_t n, int64_t k, float* c,
                            float beta, int32_t* offsets, cudaStream_t stream);

}  // namespace eep::kernels::cuda
