#include "eep/kernels/cuda/moe_dispatch.h"

#include <climits>

#include <cub/block/block_scan.cuh>

namespace eep::kernels::cuda {
namespace {

constexpr int kChooseThreads = 256;
constexpr int kAssignThreads = 512;  // one block per destination rank, tiles of this many tokens
constexpr int kScanThreads = 256;
constexpr int kCountThreads = 256;
constexpr int kCopyThreads = 128;
constexpr int kWarpSize = 32;
constexpr int kRowsPerSortBlock = 8;  // one warp per received row
constexpr int kBf16PerVector = 8;     // a uint4 holds 8 bf16
constexpr unsigned kFullWarp = 0xffffffffu;

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

bool is_aligned(const void* p, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

__global__ void choose_replicas_kernel(const int32_t* __restrict__ topk_ids, int64_t num_entries,
                                       const int32_t* __restrict__ replica_offsets,
                                       const int32_t* __restrict__ replica_slots,
                                       int num_logical_experts, int slots_per_rank, int src_rank,
                                       int32_t* __restrict__ chosen_slots,
                                       unsigned long long* __restrict__ slot_counts) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= num_entries) return;
  const int32_t logical = topk_ids[e];
  const int32_t begin =
      logical >= 0 && logical < num_logical_experts ? replica_offsets[logical] : 0;
  const int32_t end =
      logical >= 0 && logical < num_logical_experts ? replica_offsets[logical + 1] : 0;
  if (end <= begin) {  // padding (-1), an id out of range, or (never for a valid table) no replica
    chosen_slots[e] = -1;
    return;
  }
  int32_t slot = -1;
  for (int32_t i = begin; i < end; ++i) {
    const int32_t candidate = replica_slots[i];
    if (candidate / slots_per_rank == src_rank) {
      slot = candidate;
      break;
    }
  }
  if (slot < 0) {
    // token_key = e, as the CPU's ReplicaTable::choose(layer, logical, rank, t * top_k + j).
    const uint64_t num_replicas = static_cast<uint64_t>(end - begin);
    slot = replica_slots[begin + static_cast<int32_t>(static_cast<uint64_t>(e) % num_replicas)];
  }
  chosen_slots[e] = slot;
  if (slot_counts != nullptr) atomicAdd(&slot_counts[slot], 1ull);
}

// Block r assigns the rows of destination rank r in token order: a tile of kAssignThreads tokens
// at a time, one exclusive scan per tile over "does token t go to r".
__global__ void __launch_bounds__(kAssignThreads)
    assign_rows_kernel(const int32_t* __restrict__ chosen_slots,
                       const float* __restrict__ topk_weights, int64_t num_tokens, int top_k,
                       int num_ranks, int slots_per_rank, int64_t capacity,
                       int32_t* __restrict__ token_rows, MoeRowEntry* __restrict__ send_entries) {
  using Scan = cub::BlockScan<int32_t, kAssignThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  const int rank = static_cast<int>(blockIdx.x);
  MoeRowEntry* block_entries = send_entries + rank * capacity * top_k;
  int64_t num_rows = 0;  // rows of block `rank` assigned by the tiles so far (uniform)
  for (int64_t tile = 0; tile < num_tokens; tile += kAssignThreads) {
    const int64_t t = tile + threadIdx.x;
    int32_t goes = 0;
    if (t < num_tokens) {
      for (int j = 0; j < top_k; ++j) {
        const int32_t slot = chosen_slots[t * top_k + j];
        if (slot >= 0 && slot / slots_per_rank == rank) goes = 1;
      }
    }
    int32_t prefix = 0;
    int32_t tile_rows = 0;
    Scan(scan_storage).ExclusiveSum(goes, prefix, tile_rows);
    if (t < num_tokens) {
      const int64_t row = num_rows + prefix;
      token_rows[t * num_ranks + rank] = goes ? static_cast<int32_t>(row) : -1;
      if (goes) {
        MoeRowEntry* entries = block_entries + row * top_k;
        for (int j = 0; j < top_k; ++j) {
          const int32_t slot = chosen_slots[t * top_k + j];
          MoeRowEntry entry{-1, 0.0f};
          if (slot >= 0 && slot / slots_per_rank == rank) {
            entry.local_slot = slot % slots_per_rank;
            entry.weight = topk_weights[t * top_k + j];
          }
          entries[j] = entry;
        }
      }
    }
    num_rows += tile_rows;
    __syncthreads();  // scan_storage is reused by the next tile
  }
  for (int64_t i = num_rows * top_k + threadIdx.x; i < capacity * top_k; i += kAssignThreads) {
    block_entries[i] = MoeRowEntry{-1, 0.0f};
  }
}

__global__ void pack_rows_kernel(const uint4* __restrict__ h,
                                 const int32_t* __restrict__ token_rows, int num_ranks,
                                 int64_t capacity, int64_t vectors_per_row,
                                 uint4* __restrict__ send_x) {
  const int64_t t = blockIdx.x;
  for (int64_t v = threadIdx.x; v < vectors_per_row; v += blockDim.x) {
    const uint4 value = h[t * vectors_per_row + v];
    for (int r = 0; r < num_ranks; ++r) {
      const int32_t row = token_rows[t * num_ranks + r];
      if (row >= 0) send_x[(r * capacity + row) * vectors_per_row + v] = value;
    }
  }
}

__device__ bool valid_slot(int32_t local_slot, int slots_per_rank) {
  return local_slot >= 0 && local_slot < slots_per_rank;
}

__global__ void count_entries_kernel(const MoeRowEntry* __restrict__ recv_entries,
                                     int64_t num_entries, int slots_per_rank,
                                     int32_t* __restrict__ slot_counts) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= num_entries) return;
  const int32_t slot = recv_entries[i].local_slot;
  if (valid_slot(slot, slots_per_rank)) atomicAdd(&slot_counts[slot], 1);
}

// One block: offsets = exclusive scan of the counts (plus the total at the end); each slot's
// counter becomes its cursor (the first free position of its range), in place.
__global__ void __launch_bounds__(kScanThreads)
    scan_offsets_kernel(int slots_per_rank, int32_t* __restrict__ slot_cursors,
                        int32_t* __restrict__ offsets) {
  using Scan = cub::BlockScan<int32_t, kScanThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  int32_t total = 0;  // uniform
  for (int tile = 0; tile < slots_per_rank; tile += kScanThreads) {
    const int slot = tile + static_cast<int>(threadIdx.x);
    const int32_t count = slot < slots_per_rank ? slot_cursors[slot] : 0;
    int32_t prefix = 0;
    int32_t tile_total = 0;
    Scan(scan_storage).ExclusiveSum(count, prefix, tile_total);
    if (slot < slots_per_rank) {
      offsets[slot] = total + prefix;
      slot_cursors[slot] = total + prefix;
    }
    total += tile_total;
    __syncthreads();
  }
  if (threadIdx.x == 0) offsets[slots_per_rank] = total;
}

// One warp per received row: each of its entries takes a position in its slot's range and
// copies the row there.
__global__ void __launch_bounds__(kRowsPerSortBlock* kWarpSize)
    scatter_entries_kernel(const MoeRowEntry* __restrict__ recv_entries,
                           const uint4* __restrict__ recv_x, int64_t num_rows, int top_k,
                           int slots_per_rank, int64_t vectors_per_row,
                           int32_t* __restrict__ slot_cursors, int32_t* __restrict__ entry_rows,
                           uint4* __restrict__ expert_in) {
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerSortBlock +
                      static_cast<int64_t>(threadIdx.x) / kWarpSize;
  if (row >= num_rows) return;  // uniform within the warp
  for (int j = 0; j < top_k; ++j) {
    const MoeRowEntry entry = recv_entries[row * top_k + j];
    if (!valid_slot(entry.local_slot, slots_per_rank)) continue;  // uniform within the warp
    int32_t pos = 0;
    if (lane == 0) {
      pos = atomicAdd(&slot_cursors[entry.local_slot], 1);
      entry_rows[row * top_k + j] = pos;
    }
    pos = __shfl_sync(kFullWarp, pos, 0);
    for (int64_t v = lane; v < vectors_per_row; v += kWarpSize) {
      expert_in[pos * vectors_per_row + v] = recv_x[row * vectors_per_row + v];
    }
  }
}

__global__ void combine_rows_kernel(const MoeRowEntry* __restrict__ recv_entries,
                                    const int32_t* __restrict__ entry_rows,
                                    const bf16* __restrict__ expert_out, int top_k,
                                    int slots_per_rank, int64_t hidden, float4* __restrict__ out) {
  const int64_t row = blockIdx.x;
  const int64_t quads_per_row = hidden / 4;
  for (int64_t q = threadIdx.x; q < quads_per_row; q += blockDim.x) {
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int j = 0; j < top_k; ++j) {
      const MoeRowEntry entry = recv_entries[row * top_k + j];
      if (!valid_slot(entry.local_slot, slots_per_rank)) continue;
      const int64_t pos = entry_rows[row * top_k + j];
      const __nv_bfloat162* y = reinterpret_cast<const __nv_bfloat162*>(expert_out + pos * hidden);
      const float2 lo = __bfloat1622float2(y[2 * q]);
      const float2 hi = __bfloat1622float2(y[2 * q + 1]);
      acc.x = __fmaf_rn(entry.weight, lo.x, acc.x);
      acc.y = __fmaf_rn(entry.weight, lo.y, acc.y);
      acc.z = __fmaf_rn(entry.weight, hi.x, acc.z);
      acc.w = __fmaf_rn(entry.weight, hi.y, acc.w);
    }
    out[row * quads_per_row + q] = acc;
  }
}

__global__ void combine_tokens_kernel(const float4* __restrict__ returned,
                                      const int32_t* __restrict__ token_rows, int num_ranks,
                                      int64_t capacity, int64_t hidden, float4* __restrict__ x) {
  const int64_t t = blockIdx.x;
  const int64_t quads_per_row = hidden / 4;
  for (int64_t q = threadIdx.x; q < quads_per_row; q += blockDim.x) {
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int r = 0; r < num_ranks; ++r) {
      const int32_t row = token_rows[t * num_ranks + r];
      if (row < 0) continue;
      const float4 v = returned[(r * capacity + row) * quads_per_row + q];
      acc.x += v.x;
      acc.y += v.y;
      acc.z += v.z;
      acc.w += v.w;
    }
    float4 value = x[t * quads_per_row + q];
    value.x += acc.x;
    value.y += acc.y;
    value.z += acc.z;
    value.w += acc.w;
    x[t * quads_per_row + q] = value;
  }
}

// One block per entry (row, j) with a valid slot: its expert output row, copied to the entry's
// place in the return block.
__global__ void gather_entries_kernel(const MoeRowEntry* __restrict__ recv_entries,
                                      const int32_t* __restrict__ entry_rows,
                                      const uint4* __restrict__ expert_out, int slots_per_rank,
                                      int64_t vectors_per_row, uint4* __restrict__ out) {
  const int64_t e = blockIdx.x;
  if (!valid_slot(recv_entries[e].local_slot, slots_per_rank)) return;
  const int64_t pos = entry_rows[e];
  for (int64_t v = threadIdx.x; v < vectors_per_row; v += blockDim.x) {
    out[e * vectors_per_row + v] = expert_out[pos * vectors_per_row + v];
  }
}

__global__ void combine_entries_kernel(const bf16* __restrict__ returned,
                                       const int32_t* __restrict__ chosen_slots,
                                       const float* __restrict__ topk_weights,
                                       const int32_t* __restrict__ token_rows, int top_k,
                                       int num_ranks, int slots_per_rank, int64_t capacity,
                                       int64_t hidden, float4* __restrict__ x) {
  const int64_t t = blockIdx.x;
  const int64_t quads_per_row = hidden / 4;
  for (int64_t q = threadIdx.x; q < quads_per_row; q += blockDim.x) {
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int j = 0; j < top_k; ++j) {
      const int32_t slot = chosen_slots[t * top_k + j];
      if (slot < 0) continue;
      const int r = slot / slots_per_rank;
      const int64_t row = token_rows[t * num_ranks + r];
      const float w = topk_weights[t * top_k + j];
      const __nv_bfloat162* y = reinterpret_cast<const __nv_bfloat162*>(
          returned + ((r * capacity + row) * top_k + j) * hidden);
      const float2 lo = __bfloat1622float2(y[2 * q]);
      const float2 hi = __bfloat1622float2(y[2 * q + 1]);
      acc.x = __fmaf_rn(w, lo.x, acc.x);
      acc.y = __fmaf_rn(w, lo.y, acc.y);
      acc.z = __fmaf_rn(w, hi.x, acc.z);
      acc.w = __fmaf_rn(w, hi.y, acc.w);
    }
    float4 value = x[t * quads_per_row + q];
    value.x += acc.x;
    value.y += acc.y;
    value.z += acc.z;
    value.w += acc.w;
    x[t * quads_per_row + q] = value;
  }
}

}  // namespace

cudaError_t moe_choose_replicas(const int32_t* topk_ids, int64_t num_tokens, int top_k,
                                const int32_t* replica_offsets, const int32_t* replica_slots,
                                int num_logical_experts, int slots_per_rank, int src_rank,
                                int32_t* chosen_slots, int64_t* slot_counts, cudaStream_t stream) {
  if (num_tokens < 0 || top_k < 1 || num_logical_experts < 1 || slots_per_rank < 1) {
    return cudaErrorInvalidValue;
  }
  const int64_t num_entries = num_tokens * top_k;
  if (num_entries == 0) return cudaSuccess;
  choose_replicas_kernel<<<static_cast<unsigned>(ceil_div(num_entries, kChooseThreads)),
                           kChooseThreads, 0, stream>>>(
      topk_ids, num_entries, replica_offsets, replica_slots, num_logical_experts, slots_per_rank,
      src_rank, chosen_slots, reinterpret_cast<unsigned long long*>(slot_counts));
  return cudaGetLastError();
}

cudaError_t moe_assign_rows(const int32_t* chosen_slots, const float* topk_weights,
                            int64_t num_tokens, int top_k, int num_ranks, int slots_per_rank,
                            int64_t capacity, int32_t* token_rows, MoeRowEntry* send_entries,
                            cudaStream_t stream) {
  if (num_tokens < 0 || num_tokens > capacity || capacity > INT32_MAX || top_k < 1 ||
      num_ranks < 1 || slots_per_rank < 1) {
    return cudaErrorInvalidValue;
  }
  if (capacity == 0) return cudaSuccess;
  assign_rows_kernel<<<num_ranks, kAssignThreads, 0, stream>>>(
      chosen_slots, topk_weights, num_tokens, top_k, num_ranks, slots_per_rank, capacity,
      token_rows, send_entries);
  return cudaGetLastError();
}

cudaError_t moe_pack_rows(const bf16* h, const int32_t* token_rows, int64_t num_tokens,
                          int num_ranks, int64_t capacity, int64_t hidden, bf16* send_x,
                          cudaStream_t stream) {
  if (num_tokens < 0 || num_ranks < 1 || hidden % kBf16PerVector != 0 || !is_aligned(h, 16) ||
      !is_aligned(send_x, 16)) {
    return cudaErrorInvalidValue;
  }
  if (num_tokens == 0 || hidden == 0) return cudaSuccess;
  pack_rows_kernel<<<static_cast<unsigned>(num_tokens), kCopyThreads, 0, stream>>>(
      reinterpret_cast<const uint4*>(h), token_rows, num_ranks, capacity, hidden / kBf16PerVector,
      reinterpret_cast<uint4*>(send_x));
  return cudaGetLastError();
}

cudaError_t moe_sort_entries(const MoeRowEntry* recv_entries, const bf16* recv_x, int64_t num_rows,
                             int top_k, int slots_per_rank, int64_t hidden, int32_t* slot_cursors,
                             int32_t* offsets, int32_t* entry_rows, bf16* expert_in,
                             cudaStream_t stream) {
  if (num_rows < 0 || top_k < 1 || slots_per_rank < 1 || num_rows * top_k > INT32_MAX ||
      hidden % kBf16PerVector != 0 || !is_aligned(recv_x, 16) || !is_aligned(expert_in, 16)) {
    return cudaErrorInvalidValue;
  }
  cudaError_t err = cudaMemsetAsync(slot_cursors, 0, slots_per_rank * sizeof(int32_t), stream);
  if (err != cudaSuccess) return err;
  const int64_t num_entries = num_rows * top_k;
  if (num_entries > 0) {
    count_entries_kernel<<<static_cast<unsigned>(ceil_div(num_entries, kCountThreads)),
                           kCountThreads, 0, stream>>>(recv_entries, num_entries, slots_per_rank,
                                                       slot_cursors);
    if ((err = cudaGetLastError()) != cudaSuccess) return err;
  }
  scan_offsets_kernel<<<1, kScanThreads, 0, stream>>>(slots_per_rank, slot_cursors, offsets);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  if (num_rows > 0) {
    scatter_entries_kernel<<<static_cast<unsigned>(ceil_div(num_rows, kRowsPerSortBlock)),
                             kRowsPerSortBlock * kWarpSize, 0, stream>>>(
        recv_entries, reinterpret_cast<const uint4*>(recv_x), num_rows, top_k, slots_per_rank,
        hidden / kBf16PerVector, slot_cursors, entry_rows, reinterpret_cast<uint4*>(expert_in));
    if ((err = cudaGetLastError()) != cudaSuccess) return err;
  }
  return cudaSuccess;
}

cudaError_t moe_combine_rows(const MoeRowEntry* recv_entries, const int32_t* entry_rows,
                             const bf16* expert_out, int64_t num_rows, int top_k,
                             int slots_per_rank, int64_t hidden, float* out, cudaStream_t stream) {
  if (num_rows < 0 || top_k < 1 || slots_per_rank < 1 || hidden % 4 != 0 ||
      !is_aligned(expert_out, 8) || !is_aligned(out, 16)) {
    return cudaErrorInvalidValue;
  }
  if (num_rows == 0 || hidden == 0) return cudaSuccess;
  combine_rows_kernel<<<static_cast<unsigned>(num_rows), kCopyThreads, 0, stream>>>(
      recv_entries, entry_rows, expert_out, top_k, slots_per_rank, hidden,
      reinterpret_cast<float4*>(out));
  return cudaGetLastError();
}

cudaError_t moe_combine_tokens(const float* returned, const int32_t* token_rows, int64_t num_tokens,
                               int num_ranks, int64_t capacity, int64_t hidden, float* x,
                               cudaStream_t stream) {
  if (num_tokens < 0 || num_ranks < 1 || hidden % 4 != 0 || !is_aligned(returned, 16) ||
      !is_aligned(x, 16)) {
    return cudaErrorInvalidValue;
  }
  if (num_tokens == 0 || hidden == 0) return cudaSuccess;
  combine_tokens_kernel<<<static_cast<unsigned>(num_tokens), kCopyThreads, 0, stream>>>(
      reinterpret_cast<const float4*>(returned), token_rows, num_ranks, capacity, hidden,
      reinterpret_cast<float4*>(x));
  return cudaGetLastError();
}

cudaError_t moe_gather_entries(const MoeRowEntry* recv_entries, const int32_t* entry_rows,
                               const bf16* expert_out, int64_t num_rows, int top_k,
                               int slots_per_rank, int64_t hidden, bf16* out, cudaStream_t stream) {
  if (num_rows < 0 || top_k < 1 || slots_per_rank < 1 || num_rows * top_k > INT32_MAX ||
      hidden % kBf16PerVector != 0 || !is_aligned(expert_out, 16) || !is_aligned(out, 16)) {
    return cudaErrorInvalidValue;
  }
  if (num_rows == 0 || hidden == 0) return cudaSuccess;
  gather_entries_kernel<<<static_cast<unsigned>(num_rows * top_k), kCopyThreads, 0, stream>>>(
      recv_entries, entry_rows, reinterpret_cast<const uint4*>(expert_out), slots_per_rank,
      hidden / kBf16PerVector, reinterpret_cast<uint4*>(out));
  return cudaGetLastError();
}

cudaError_t moe_combine_entries(const bf16* returned, const int32_t* chosen_slots,
                                const float* topk_weights, const int32_t* token_rows,
                                int64_t num_tokens, int top_k, int num_ranks, int slots_per_rank,
                                int64_t capacity, int64_t hidden, float* x, cudaStream_t stream) {
  if (num_tokens < 0 || top_k < 1 || num_ranks < 1 || slots_per_rank < 1 || hidden % 4 != 0 ||
      !is_aligned(returned, 8) || !is_aligned(x, 16)) {
    return cudaErrorInvalidValue;
  }
  if (num_tokens == 0 || hidden == 0) return cudaSuccess;
  combine_entries_kernel<<<static_cast<unsigned>(num_tokens), kCopyThreads, 0, stream>>>(
      returned, chosen_slots, topk_weights, token_rows, top_k, num_ranks, slots_per_rank, capacity,
      hidden, reinterpret_cast<float4*>(x));
  return cudaGetLastError();
}

}  // namespace eep::kernels::cuda
