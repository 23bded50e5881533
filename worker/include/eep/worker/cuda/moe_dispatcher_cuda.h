// The expert-parallel MoE exchange on the GPU (DESIGN.md section 5): the device twin of
// MoeDispatcher (moe_dispatch.h), entirely on the device and capturable in a CUDA graph. The
// sizes of every buffer and of every all-to-all depend only on `capacity` (the most tokens any
// rank has in this step, agreed by the engine), never on the routing: each rank sends each peer
// a block of `capacity` rows (a token goes to a rank at most once, one row carrying all of its
// experts there), the rows travel with their (local slot, weight) entries, the receiver sorts
// its entries by slot into one grouped GEMM and sends the expert outputs back (or their partial
// sums per row, MoeCombine), and the sender adds them to x (kernels/cuda/moe_dispatch.h).
//
// Numerics: each expert row goes through bf16 GEMMs whose result does not depend on the other
// rows, so the expert outputs are bit for bit the same at any EP size and replica choice. The
// combine is fp32, x[t] += sum_j w_j * y_j in j order (as the CPU MoeDispatcher), in one of two
// ways (MoeCombine):
// - kExact (the default): the receiver sends back each entry's bf16 expert output and the sender
//   sums them in j order, so x is bit for bit the same at any EP size, placement and replica
//   choice (EPLB moves and scaling do not change greedy outputs). Returns capacity * top_k rows
//   per peer.
// - kRankPartials: the receiver sums its entries of a row in fp32 and sends one row per token
//   back (capacity fp32 rows per peer: top_k / 2 times less traffic); the sum is re-associated
//   per rank (x[t] += sum_r (sum_{j on r} w_j * y_j)), equal to the one-rank result within fp32
//   rounding, not bitwise, so a new placement can change greedy outputs.
//
// One thread (the engine loop) calls it. Every rank of the group calls forward() for the same
// layer in the same order with the same capacity, also with zero tokens (a dummy step).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include <cuda_runtime.h>

#include "eep/common/placement.h"
#include "eep/common/status.h"
#include "eep/kernels/cuda/moe_dispatch.h"
#include "eep/kernels/cuda/types.h"
#include "eep/worker/comm/process_group.h"
#include "eep/worker/engine/moe_combine.h"

namespace eep::worker {

// The expert weights of this rank's slots of one layer, device memory.
struct MoeLayerWeightsCuda {
  // [slots_per_rank, 2 * intermediate, hidden]: per slot the gate_proj rows, then the up_proj rows.
  const kernels::cuda::bf16* w13 = nullptr;
  // [slots_per_rank, hidden, intermediate]: down_proj per slot.
  const kernels::cuda::bf16* w2 = nullptr;
};

class MoeDispatcherCuda {
 public:
  // Allocates every buffer for max_capacity tokens per rank (cudaMalloc, on the current device)
  // and uploads the placement's replica tables. group may be null only when placement.num_ranks
  // is 1; otherwise its operations must be ordered on `stream` (the NCCL group enqueues on the
  // stream the model runs on), with device buffers. hidden and intermediate: multiples of 64 (the
  // grouped GEMM's tiles).
  static Result<std::unique_ptr<MoeDispatcherCuda>> create(
      Placement placement, int rank, ProcessGroup* group, int64_t max_capacity, int hidden,
      int intermediate, int top_k, cudaStream_t stream, MoeCombine combine = MoeCombine::kExact);
  // The device bytes create() allocates for these sizes (with_group: separate receive buffers).
  static size_t required_device_bytes(const Placement& placement, bool with_group,
                                      int64_t max_capacity, int hidden, int intermediate, int top_k,
                                      MoeCombine combine = MoeCombine::kExact);

  ~MoeDispatcherCuda();
  MoeDispatcherCuda(const MoeDispatcherCuda&) = delete;
  MoeDispatcherCuda& operator=(const MoeDispatcherCuda&) = delete;

  // x[t, :] += sum_j topk_weights[t][j] * expert_{topk_ids[t][j]}(h[t, :]) for t < num_tokens,
  // enqueued on the stream. h [num_tokens, hidden] bf16, topk_ids and topk_weights
  // [num_tokens, top_k], x [num_tokens, hidden] fp32; h and x 16-byte aligned. Ids of -1 (padding)
  // contribute nothing and are not counted. capacity: the same on every rank,
  // num_tokens <= capacity <= max_capacity. No host synchronisation and no host reads of device
  // memory, so a forward can be captured in a CUDA graph (its sizes are fixed by num_tokens and
  // capacity; pad a bucket with ids of -1). With an NCCL group, run one eager forward before the
  // first capture (NCCL connects peers lazily, which cannot happen inside a capture). Returns an
  // error for bad arguments, a failed launch or a failed exchange (then the group is broken).
  Status forward(int layer_idx, const kernels::cuda::bf16* h, const int32_t* topk_ids,
                 const float* topk_weights, int64_t num_tokens, int64_t capacity,
                 const MoeLayerWeightsCuda& weights, float* x);

  const Placement& placement() const { return placement_; }
  int rank() const { return rank_; }
  int64_t max_capacity() const { return max_capacity_; }
  // Layer `layer_idx` routes by `row` (a valid phy2log row of the placement's sizes, else
  // kInvalidArgument and nothing changes) from the next forward on; the other layers keep theirs.
  // The layer's replica tables are rewritten in place (same device buffers, same sizes), so
  // captured graphs route by the new row when replayed. The upload is ordered on the stream after
  // every forward enqueued before; synchronises the stream, so never during a capture
  // (kFailedPrecondition). The caller has put the experts of `row` into this rank's slots.
  Status set_layer_placement(int layer_idx, std::vector<int> row);
  // Device memory held by this dispatcher.
  size_t device_bytes() const { return device_bytes_; }

  // Tokens this rank sent to each physical slot since the last take: [layer][slot] (for EPLB).
  // Synchronises the stream.
  std::vector<std::vector<int64_t>> take_slot_counts();

 private:
  MoeDispatcherCuda(Placement placement, int rank, ProcessGroup* group, int64_t max_capacity,
                    int hidden, int intermediate, int top_k, cudaStream_t stream,
                    MoeCombine combine);
  Status allocate_and_upload();
  template <typename T>
  Status allocate(T** ptr, size_t count, const char* what);
  // All-to-all of bytes_per_peer bytes per peer; without a group send and recv are the same
  // buffer and nothing moves.
  Status exchange(const void* send, void* recv, size_t bytes_per_peer, const char* what);

  Placement placement_;
  int rank_;
  ProcessGroup* group_;
  int64_t max_capacity_;
  int hidden_;
  int intermediate_;
  int top_k_;
  cudaStream_t stream_;
  MoeCombine combine_;

  std::vector<void*> allocations_;
  size_t device_bytes_ = 0;
  std::vector<size_t> peer_bytes_;  // all_to_all_v sizes, host

  // Device buffers; sizes for max_capacity (C) with R ranks, k = top_k, S = slots_per_rank.
  int32_t* replica_offsets_ = nullptr;                  // [layers][logical experts + 1]
  int32_t* replica_slots_ = nullptr;                    // [layers][R * S]
  int64_t* slot_counts_ = nullptr;                      // [layers][R * S]
  int32_t* chosen_slots_ = nullptr;                     // [C, k]
  int32_t* token_rows_ = nullptr;                       // [C, R]
  kernels::cuda::bf16* send_x_ = nullptr;               // [R * C, hidden]
  kernels::cuda::bf16* recv_x_ = nullptr;               // [R * C, hidden] (= send_x_ without group)
  kernels::cuda::MoeRowEntry* send_entries_ = nullptr;  // [R * C, k]
  kernels::cuda::MoeRowEntry* recv_entries_ = nullptr;  // [R * C, k] (= send_entries_ ditto)
  int32_t* slot_cursors_ = nullptr;                     // [S]
  int32_t* offsets_ = nullptr;                          // [S + 1]
  int32_t* entry_rows_ = nullptr;                       // [R * C, k]
  // [R * C * k, max(hidden, intermediate)]: the experts' input rows, then their activation, then
  // (kExact) the entries' outputs sent back.
  kernels::cuda::bf16* expert_a_ = nullptr;
  // [R * C * k, max(2 * intermediate, hidden)]: the gate/up product, then the experts' output,
  // then (kExact with a group) the entries' outputs received back.
  kernels::cuda::bf16* expert_b_ = nullptr;
  // kRankPartials only:
  float* partial_ = nullptr;   // [R * C, hidden] the receiver's per-row sums
  float* returned_ = nullptr;  // [R * C, hidden] (= partial_ without group)
};

}  // namespace eep::worker
