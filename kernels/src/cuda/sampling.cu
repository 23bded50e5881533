#include "eep/kernels/cuda/sampling.h"

#include <algorithm>
#include <climits>
#include <cub/device/device_segmented_radix_sort.cuh>

#include "glibc_expf.cuh"

namespace eep::kernels::cuda {
namespace {

// sampling_prepare_kernel: one CTA per row.
constexpr int kPrepareThreads = 1024;
// Logits whose exponentials one thread adds up while the others compute the next tile.
constexpr int kSumTile = 4096;
// sampling_draw_kernel: one CTA per row, sorted probabilities staged in tiles of kScanTile.
constexpr int kDrawThreads = 256;
constexpr int kGreedyThreads = 256;
constexpr int kScanTile = 4096;
// Probabilities are in [0, 1], so their float bits above bit 29 are zero: the sort looks at 30.
constexpr int kSortKeyBits = 30;
constexpr size_t kAlignment = 256;

size_t align_up(size_t n) {
  return (n + kAlignment - 1) / kAlignment * kAlignment;
}

__host__ __device__ constexpr int64_t num_scan_tiles(int64_t vocab) {
  return (vocab + kScanTile - 1) / kScanTile;
}

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}

// Where each buffer lives in the workspace (offsets from its 256-byte aligned start).
struct WorkspaceLayout {
  size_t keys[2];                     // uint32 [rows * vocab]: float bits of the probabilities
  size_t ids[2];                      // int32 [rows * vocab]
  size_t segment_begin, segment_end;  // int [rows]: a greedy row's segment is empty
  size_t checkpoints;                 // double [rows * num_scan_tiles]
  size_t sort_temp;
  size_t sort_temp_bytes;
  size_t total;  // including the slack for aligning the start
};

cudaError_t sort_pairs(void* temp, size_t& temp_bytes, cub::DoubleBuffer<uint32_t>& keys,
                       cub::DoubleBuffer<int32_t>& ids, int64_t num_rows, int64_t vocab,
                       const int* segment_begin, const int* segment_end, cudaStream_t stream) {
  // Stable: equal probabilities keep ascending id order, the CPU's tie rule.
  return cub::DeviceSegmentedRadixSort::SortPairsDescending(
      temp, temp_bytes, keys, ids, static_cast<int>(num_rows * vocab), static_cast<int>(num_rows),
      segment_begin, segment_end, 0, kSortKeyBits, stream);
}

cudaError_t workspace_layout(int64_t num_rows, int64_t vocab, WorkspaceLayout* layout) {
  const size_t items = static_cast<size_t>(num_rows * vocab);
  size_t at = 0;
  auto take = [&](size_t bytes) {
    const size_t offset = at;
    at = align_up(at + bytes);
    return offset;
  };
  for (int b = 0; b < 2; ++b) layout->keys[b] = take(items * sizeof(uint32_t));
  for (int b = 0; b < 2; ++b) layout->ids[b] = take(items * sizeof(int32_t));
  layout->segment_begin = take(num_rows * sizeof(int));
  layout->segment_end = take(num_rows * sizeof(int));
  layout->checkpoints = take(num_rows * num_scan_tiles(vocab) * sizeof(double));
  cub::DoubleBuffer<uint32_t> keys(nullptr, nullptr);
  cub::DoubleBuffer<int32_t> ids(nullptr, nullptr);
  layout->sort_temp_bytes = 0;
  const cudaError_t err = sort_pairs(nullptr, layout->sort_temp_bytes, keys, ids, num_rows, vocab,
                                     nullptr, nullptr, nullptr);
  layout->sort_temp = take(layout->sort_temp_bytes);
  layout->total = at + kAlignment;
  return err;
}

// splitmix64's (step + 1)-th output as a double in [0, 1): cpu::sampling_uniform.
__device__ double sampling_uniform(uint64_t seed, uint64_t step) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (step + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z = z ^ (z >> 31);
  return __dmul_rn(static_cast<double>(z >> 11), 0x1.0p-53);
}

// expf((logit - max_logit) / temperature) with the CPU's float operations.
__device__ __forceinline__ float scaled_exp(float logit, float max_logit, float temperature) {
  return glibc::expf_glibc(__fdiv_rn(__fsub_rn(logit, max_logit), temperature));
}

// Larger logit first, then the lower id (std::max_element keeps the first maximum).
__device__ __forceinline__ bool beats(float value, int64_t idx, float best, int64_t best_idx) {
  return value > best || (value == best && idx < best_idx);
}

// Per row: the maximum logit; for a sampled row e[i] = expf((logit - max) / temperature), their sum
// in double in id order (one thread, as the CPU), p[i] = float(e[i] / sum) as sort keys with ids as
// values, and the row's segment.
__global__ void __launch_bounds__(kPrepareThreads)
    sampling_prepare_kernel(const float* __restrict__ logits, int64_t vocab,
                            const DeviceSamplingParams* __restrict__ params,
                            uint32_t* __restrict__ keys, int32_t* __restrict__ ids,
                            int* __restrict__ segment_begin, int* __restrict__ segment_end) {
  __shared__ float tile[2][kSumTile];
  __shared__ float warp_value[kPrepareThreads / 32];
  __shared__ int64_t warp_idx[kPrepareThreads / 32];
  __shared__ double row_sum;
  const int64_t row = blockIdx.x;
  const float* row_logits = logits + row * vocab;
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;

  float best = -INFINITY;
  int64_t best_idx = vocab;
  for (int64_t i = threadIdx.x; i < vocab; i += kPrepareThreads) {
    const float value = row_logits[i];
    if (beats(value, i, best, best_idx)) {
      best = value;
      best_idx = i;
    }
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    const float other = __shfl_xor_sync(0xffffffffu, best, offset);
    const int64_t other_idx = __shfl_xor_sync(0xffffffffu, best_idx, offset);
    if (beats(other, other_idx, best, best_idx)) {
      best = other;
      best_idx = other_idx;
    }
  }
  if (lane == 0) {
    warp_value[warp] = best;
    warp_idx[warp] = best_idx;
  }
  __syncthreads();
  best = warp_value[0];
  best_idx = warp_idx[0];
  for (int w = 1; w < kPrepareThreads / 32; ++w) {
    if (beats(warp_value[w], warp_idx[w], best, best_idx)) {
      best = warp_value[w];
      best_idx = warp_idx[w];
    }
  }

  const float temperature = params[row].temperature;
  const int row_begin = static_cast<int>(row * vocab);
  if (temperature <= 0.0f) {
    if (threadIdx.x == 0) {  // sampling_greedy_kernel writes the token
      segment_begin[row] = row_begin;
      segment_end[row] = row_begin;
    }
    return;
  }
  const float max_logit = best;

  // The sum in id order. Iteration t: the CTA computes tile t into tile[t % 2] while thread 0
  // adds up tile t - 1 from tile[(t - 1) % 2]; the barrier ends both.
  const int64_t num_tiles = (vocab + kSumTile - 1) / kSumTile;
  double sum = 0.0;
  for (int64_t t = 0; t <= num_tiles; ++t) {
    if (t < num_tiles) {
      float* dst = tile[t % 2];
      for (int j = threadIdx.x; j < kSumTile; j += kPrepareThreads) {
        const int64_t i = t * kSumTile + j;
        if (i < vocab) dst[j] = scaled_exp(row_logits[i], max_logit, temperature);
      }
    }
    if (t > 0 && threadIdx.x == 0) {
      const float* src = tile[(t - 1) % 2];
      const int n = static_cast<int>(min64(kSumTile, vocab - (t - 1) * kSumTile));
#pragma unroll 8
      for (int j = 0; j < n; ++j) sum = __dadd_rn(sum, static_cast<double>(src[j]));
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) row_sum = sum;
  __syncthreads();
  sum = row_sum;
  uint32_t* row_keys = keys + row * vocab;
  int32_t* row_ids = ids + row * vocab;
  for (int64_t i = threadIdx.x; i < vocab; i += kPrepareThreads) {
    const float e = scaled_exp(row_logits[i], max_logit, temperature);
    row_keys[i] = __float_as_uint(__double2float_rn(__ddiv_rn(static_cast<double>(e), sum)));
    row_ids[i] = static_cast<int32_t>(i);
  }
  if (threadIdx.x == 0) {
    segment_begin[row] = row_begin;
    segment_end[row] = row_begin + static_cast<int>(vocab);
  }
}

// Per sampled row, over the probabilities sorted descending (ties by lower id): the nucleus
// (the shortest prefix whose double mass, summed along the order, reaches top_p), then the
// first id of the nucleus whose running sum exceeds u * mass. Thread 0 sums as the CPU does
// and records the running sum at the end of every tile, so the draw re-adds one tile only.
__global__ void __launch_bounds__(kDrawThreads)
    sampling_draw_kernel(const uint32_t* __restrict__ sorted_keys,
                         const int32_t* __restrict__ sorted_ids, int64_t vocab,
                         const DeviceSamplingParams* __restrict__ params,
                         double* __restrict__ checkpoints, int32_t* __restrict__ out_tokens) {
  __shared__ float tile[2][kScanTile];
  __shared__ int done[2];
  __shared__ int64_t draw_tile;
  const int64_t row = blockIdx.x;
  const DeviceSamplingParams p = params[row];
  if (p.temperature <= 0.0f) return;  // greedy: sampling_greedy_kernel writes the token
  const uint32_t* keys = sorted_keys + row * vocab;
  const int32_t* ids = sorted_ids + row * vocab;
  const int64_t num_tiles = num_scan_tiles(vocab);
  double* row_checkpoints = checkpoints + row * num_tiles;
  const double top_p = p.top_p;

  // Iteration t: the CTA loads tile t while thread 0 adds up tile t - 1; done[t % 2] says
  // whether the nucleus ended there (written before the barrier, rewritten two barriers later).
  double mass = 0.0;
  int64_t nucleus = vocab;
  for (int64_t t = 0; t <= num_tiles; ++t) {
    if (t < num_tiles) {
      float* dst = tile[t % 2];
      for (int j = threadIdx.x; j < kScanTile; j += kDrawThreads) {
        const int64_t i = t * kScanTile + j;
        if (i < vocab) dst[j] = __uint_as_float(keys[i]);
      }
    }
    if (threadIdx.x == 0) {
      int ended = 0;
      if (t > 0) {
        const float* src = tile[(t - 1) % 2];
        const int64_t base = (t - 1) * kScanTile;
        const int n = static_cast<int>(min64(kScanTile, vocab - base));
        for (int j = 0; j < n; ++j) {
          mass = __dadd_rn(mass, static_cast<double>(src[j]));
          if (!(mass < top_p)) {  // the CPU's loop condition, NaN included
            nucleus = base + j + 1;
            ended = 1;
            break;
          }
        }
        row_checkpoints[t - 1] = mass;
      }
      done[t % 2] = ended;
    }
    __syncthreads();
    if (done[t % 2]) break;
  }

  // Thread 0: the tile holding the first running sum above the target.
  double target = 0.0;
  int64_t token_idx = nucleus - 1;  // when no running sum exceeds the target
  if (threadIdx.x == 0) {
    target = __dmul_rn(sampling_uniform(p.seed, p.step), mass);
    const int64_t last_tile = (nucleus - 1) / kScanTile;
    int64_t found = -1;
    for (int64_t t = 0; t <= last_tile; ++t) {
      if (target < row_checkpoints[t]) {
        found = t;
        break;
      }
    }
    draw_tile = found;
  }
  __syncthreads();
  const int64_t t = draw_tile;
  if (t >= 0) {
    for (int j = threadIdx.x; j < kScanTile; j += kDrawThreads) {
      const int64_t i = t * kScanTile + j;
      if (i < vocab) tile[0][j] = __uint_as_float(keys[i]);
    }
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  if (t >= 0) {
    double cumulative = t > 0 ? row_checkpoints[t - 1] : 0.0;
    const int64_t end = min64((t + 1) * kScanTile, nucleus);
    for (int64_t i = t * kScanTile; i < end; ++i) {
      cumulative = __dadd_rn(cumulative, static_cast<double>(tile[0][i - t * kScanTile]));
      if (target < cumulative) {
        token_idx = i;
        break;
      }
    }
  }
  out_tokens[row] = ids[token_idx];
}

// Greedy rows: the lowest id among the maximal logits, written last (after the sort and the
// draw), so nothing that runs for the sampled rows can touch a greedy row's token afterwards.
__global__ void __launch_bounds__(kGreedyThreads)
    sampling_greedy_kernel(const float* __restrict__ logits, int64_t vocab,
                           const DeviceSamplingParams* __restrict__ params,
                           int32_t* __restrict__ out_tokens) {
  __shared__ float best_value[kGreedyThreads];
  __shared__ int64_t best_index[kGreedyThreads];
  const int64_t row = blockIdx.x;
  if (params[row].temperature > 0.0f) return;
  const float* row_logits = logits + row * vocab;
  float best = -INFINITY;
  int64_t best_idx = vocab;
  for (int64_t i = threadIdx.x; i < vocab; i += kGreedyThreads) {
    if (beats(row_logits[i], i, best, best_idx)) {
      best = row_logits[i];
      best_idx = i;
    }
  }
  best_value[threadIdx.x] = best;
  best_index[threadIdx.x] = best_idx;
  __syncthreads();
  for (int half = kGreedyThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half && beats(best_value[threadIdx.x + half], best_index[threadIdx.x + half],
                                    best_value[threadIdx.x], best_index[threadIdx.x])) {
      best_value[threadIdx.x] = best_value[threadIdx.x + half];
      best_index[threadIdx.x] = best_index[threadIdx.x + half];
    }
    __syncthreads();
  }
  // All logits NaN leaves vocab: fall back to id 0 (the CPU's max_element returns the first).
  if (threadIdx.x == 0)
    out_tokens[row] = static_cast<int32_t>(best_index[0] < vocab ? best_index[0] : 0);
}

__global__ void sampling_exp_kernel(const float* __restrict__ x, int64_t n,
                                    float* __restrict__ out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = glibc::expf_glibc(x[i]);
  }
}

}  // namespace

size_t sampling_workspace_bytes(int64_t num_rows, int64_t vocab) {
  WorkspaceLayout layout;
  workspace_layout(std::max<int64_t>(num_rows, 0), std::max<int64_t>(vocab, 0), &layout);
  return layout.total;
}

cudaError_t sample_tokens(const float* logits, int64_t num_rows, int64_t vocab,
                          const DeviceSamplingParams* params, void* workspace,
                          size_t workspace_bytes, int32_t* out_tokens, cudaStream_t stream) {
  if (num_rows < 0 || vocab < 1 || num_rows * vocab > INT_MAX) return cudaErrorInvalidValue;
  if (num_rows == 0) return cudaSuccess;
  WorkspaceLayout layout;
  cudaError_t err = workspace_layout(num_rows, vocab, &layout);
  if (err != cudaSuccess) return err;
  if (workspace == nullptr || workspace_bytes < layout.total) return cudaErrorInvalidValue;
  char* base = reinterpret_cast<char*>(align_up(reinterpret_cast<uintptr_t>(workspace)));
  uint32_t* keys[2] = {reinterpret_cast<uint32_t*>(base + layout.keys[0]),
                       reinterpret_cast<uint32_t*>(base + layout.keys[1])};
  int32_t* ids[2] = {reinterpret_cast<int32_t*>(base + layout.ids[0]),
                     reinterpret_cast<int32_t*>(base + layout.ids[1])};
  int* segment_begin = reinterpret_cast<int*>(base + layout.segment_begin);
  int* segment_end = reinterpret_cast<int*>(base + layout.segment_end);
  double* checkpoints = reinterpret_cast<double*>(base + layout.checkpoints);

  const unsigned grid = static_cast<unsigned>(num_rows);
  sampling_prepare_kernel<<<grid, kPrepareThreads, 0, stream>>>(logits, vocab, params, keys[0],
                                                                ids[0], segment_begin, segment_end);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  // The sorted buffers are whichever the pass count leaves current (known on the host).
  cub::DoubleBuffer<uint32_t> sorted_keys(keys[0], keys[1]);
  cub::DoubleBuffer<int32_t> sorted_ids(ids[0], ids[1]);
  size_t temp_bytes = layout.sort_temp_bytes;
  err = sort_pairs(base + layout.sort_temp, temp_bytes, sorted_keys, sorted_ids, num_rows, vocab,
                   segment_begin, segment_end, stream);
  if (err != cudaSuccess) return err;
  sampling_draw_kernel<<<grid, kDrawThreads, 0, stream>>>(
      sorted_keys.Current(), sorted_ids.Current(), vocab, params, checkpoints, out_tokens);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  sampling_greedy_kernel<<<grid, kGreedyThreads, 0, stream>>>(logits, vocab, params, out_tokens);
  return cudaGetLastError();
}

cudaError_t sampling_exp(const float* x, int64_t n, float* out, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const int64_t blocks = std::min<int64_t>((n + 255) / 256, 4096);
  sampling_exp_kernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(x, n, out);
  return cudaGetLastError();
}

}  // namespace eep::kernels::cuda
