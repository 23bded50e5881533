// Token sampling on the device: draws exactly the token kernels::cpu::sample_token draws from
// the same fp32 logits (eep/kernels/sampling.h states the procedure), so that a sequence samples
// the same way on a CPU and a GPU worker. Greedy rows are an argmax; sampled rows follow the
// CPU's arithmetic operation by operation: expf as glibc computes it (sampling_exp), the sums in
// double in the CPU's orders (one thread per row adds them up: up to two chains of vocab
// dependent double adds, estimated 0.5-1.5 ms at vocab 152k, not yet measured; rows run in
// parallel), the nucleus from a stable segmented radix sort (CUB).
#pragma once

#include <cstddef>
#include <cstdint>

#include "eep/kernels/cuda/types.h"

namespace eep::kernels::cuda {

struct DeviceSamplingParams {
  float temperature;  // <= 0: greedy
  float top_p;
  uint64_t seed;
  uint64_t step;  // tokens the sequence generated before this one
};

// Bytes of the workspace sample_tokens needs for num_rows rows of vocab logits: about
// 16 * num_rows * vocab (sort keys and ids, twice) plus CUB's temporary storage. Calls the CUDA
// runtime (CUB's size query) on the current device. num_rows * vocab must stay below 2^31.
size_t sampling_workspace_bytes(int64_t num_rows, int64_t vocab);

// out_tokens[r] = cpu::sample_token(logits + r * vocab, vocab, params[r]...) for r < num_rows.
// logits [num_rows, vocab] fp32 (finite, or -inf for masked ids), params device [num_rows],
// out_tokens device [num_rows]. Rows may mix greedy and sampled. cudaErrorInvalidValue when
// workspace_bytes < sampling_workspace_bytes(num_rows, vocab).
cudaError_t sample_tokens(const float* logits, int64_t num_rows, int64_t vocab,
                          const DeviceSamplingParams* params, void* workspace,
                          size_t workspace_bytes, int32_t* out_tokens, cudaStream_t stream);

// out[i] = the exponential sample_tokens uses, bit for bit glibc's expf on x86-64 with FMA (the
// CPU workers' libm), for the tests to compare against std::exp on the host.
cudaError_t sampling_exp(const float* x, int64_t n, float* out, cudaStream_t stream);

}  // namespace eep::kernels::cuda
