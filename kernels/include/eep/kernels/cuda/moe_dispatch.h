// The device side of the expert-parallel MoE exchange (DESIGN.md section 5, "CUDA graphs"): the
// kernels around the two all-to-alls, with fixed-capacity per-peer blocks so that every size the
// host sees depends only on `capacity`, never on the routing. The worker's MoeDispatcherCuda
// composes them; the CPU reference of the whole exchange is eep::worker::MoeDispatcher.
//
// Layout. With R ranks and capacity C (the most tokens any rank has this step, the same on every
// rank), a send or receive buffer is R blocks of C rows, the block for peer p at rows
// [p * C, (p + 1) * C). A token goes to a rank at most once: one row carries every one of its
// top-k experts that the chosen replicas put on that rank, so C rows per peer always suffice.
// A row's k MoeRowEntry values say which local slot of the receiving rank computes the row for
// top-k position j (-1: none) and with which router weight; rows a sender leaves unused carry
// k entries of -1 (their hidden vector is never read).
//
// Every launcher enqueues on `stream`, never synchronises or reads device memory on the host, so
// the whole exchange can be captured in a CUDA graph.
#pragma once

#include <cstdint>

#include "eep/kernels/cuda/types.h"

namespace eep::kernels::cuda {

struct MoeRowEntry {
  int32_t local_slot;  // slot on the receiving rank, in [0, slots_per_rank); -1: no expert
  float weight;        // the router weight of this top-k position
};
static_assert(sizeof(MoeRowEntry) == 8);

// Routing, as eep::ReplicaTable::choose: for e = t * top_k + j < num_tokens * top_k, the
// physical slot of logical expert topk_ids[e] that rank src_rank uses: its first replica on
// src_rank if any, else replica_slots[begin + e % n] (token_key = e). The replicas of logical
// expert x are replica_slots[replica_offsets[x] .. replica_offsets[x + 1]) in increasing slot
// order (replica_offsets: num_logical_experts + 1 values; both tables of one layer).
// chosen_slots[e] = that slot, or -1 when topk_ids[e] is outside [0, num_logical_experts)
// (-1 marks padding tokens; such entries contribute nothing). When slot_counts (the layer's
// [num_slots] int64 counters) is not null, each chosen slot's counter is incremented (atomics).
cudaError_t moe_choose_replicas(const int32_t* topk_ids, int64_t num_tokens, int top_k,
                                const int32_t* replica_offsets, const int32_t* replica_slots,
                                int num_logical_experts, int slots_per_rank, int src_rank,
                                int32_t* chosen_slots, int64_t* slot_counts, cudaStream_t stream);

// Row assignment on the sender. For every destination rank r < num_ranks and token
// t < num_tokens (<= capacity): token_rows[t * num_ranks + r] = the token's row in block r (the
// number of lower tokens that also go to r), or -1 when none of its chosen slots is on r.
// send_entries [num_ranks * capacity, top_k]: a used row's entry j = {chosen slot's local index,
// topk_weights[t * top_k + j]} when chosen slot j is on r, else {-1, 0}; every unused row of
// every block is {-1, 0} throughout. Rows are assigned in token order, so the assignment is
// deterministic. num_ranks blocks of one scan each: num_tokens may be 0 (the entries are still
// written), num_ranks and capacity must be > 0.
cudaError_t moe_assign_rows(const int32_t* chosen_slots, const float* topk_weights,
                            int64_t num_tokens, int top_k, int num_ranks, int slots_per_rank,
                            int64_t capacity, int32_t* token_rows, MoeRowEntry* send_entries,
                            cudaStream_t stream);

// send_x[r * capacity + token_rows[t * num_ranks + r], :] = h[t, :] for every t < num_tokens and
// r with a row. h [num_tokens, hidden], send_x [num_ranks * capacity, hidden]; hidden a multiple
// of 8 and both pointers 16-byte aligned.
cudaError_t moe_pack_rows(const bf16* h, const int32_t* token_rows, int64_t num_tokens,
                          int num_ranks, int64_t capacity, int64_t hidden, bf16* send_x,
                          cudaStream_t stream);

// The receiver's counting sort of its expert entries by local slot. recv_entries
// [num_rows, top_k] and recv_x [num_rows, hidden] (num_rows = num_ranks * capacity > 0) as
// received. Afterwards: offsets [slots_per_rank + 1] holds the grouped GEMM's row offsets
// (slot s's entries at [offsets[s], offsets[s + 1]), offsets[slots_per_rank] = the number of
// entries); for every entry (row, j) with local_slot >= 0, entry_rows[row * top_k + j] = its
// position p and expert_in[p, :] = recv_x[row, :] (entries with local_slot -1 leave entry_rows
// unwritten). The order of entries within a slot is arbitrary (atomics). slot_cursors: scratch of
// slots_per_rank values. local_slot values >= slots_per_rank are treated as -1 (never written
// out of bounds). expert_in holds num_rows * top_k rows; hidden a multiple of 8.
cudaError_t moe_sort_entries(const MoeRowEntry* recv_entries, const bf16* recv_x, int64_t num_rows,
                             int top_k, int slots_per_rank, int64_t hidden, int32_t* slot_cursors,
                             int32_t* offsets, int32_t* entry_rows, bf16* expert_in,
                             cudaStream_t stream);

// The combine by rank partial sums (4x less return traffic than the exact combine at top-8, not
// placement-invariant), receiver side: for every row < num_rows, out[row, :] (fp32) = sum over j in
// increasing order with local_slot >= 0 of weight_j * expert_out[entry_rows[row * top_k + j], :],
// accumulated in fp32 from 0 (one fused multiply-add per term); rows without entries get zeros.
// Entries are skipped exactly where moe_sort_entries skipped them. hidden a multiple of 4.
cudaError_t moe_combine_rows(const MoeRowEntry* recv_entries, const int32_t* entry_rows,
                             const bf16* expert_out, int64_t num_rows, int top_k,
                             int slots_per_rank, int64_t hidden, float* out, cudaStream_t stream);

// The combine by rank partial sums, sender side: for t < num_tokens, x[t, :] += (sum over r in
// increasing rank with a row of returned[r * capacity + token_rows[t * num_ranks + r], :]), the sum
// taken in fp32 from 0 before it is added to x. x [num_tokens, hidden] fp32, 16-byte aligned;
// hidden a multiple of 4.
cudaError_t moe_combine_tokens(const float* returned, const int32_t* token_rows, int64_t num_tokens,
                               int num_ranks, int64_t capacity, int64_t hidden, float* x,
                               cudaStream_t stream);

// The exact combine (placement-invariant), receiver side: for every entry (row, j) with
// local_slot >= 0, out[row * top_k + j, :] = expert_out[entry_rows[row * top_k + j], :] (bf16,
// bit for bit); other entries leave out unwritten. out [num_rows * top_k, hidden], 16-byte
// aligned like expert_out; hidden a multiple of 8. Sent back as is: each peer's block is its
// capacity rows times top_k entries.
cudaError_t moe_gather_entries(const MoeRowEntry* recv_entries, const int32_t* entry_rows,
                               const bf16* expert_out, int64_t num_rows, int top_k,
                               int slots_per_rank, int64_t hidden, bf16* out, cudaStream_t stream);

// The exact combine, sender side: for t < num_tokens, x[t, :] += sum over j in increasing order
// with chosen_slots[t * top_k + j] >= 0 of topk_weights[t * top_k + j] * returned[(r * capacity +
// token_rows[t * num_ranks + r]) * top_k + j, :] where r = chosen slot / slots_per_rank,
// accumulated in fp32 from 0 (one fused multiply-add per term) before it is added to x: the
// one-rank sum, whatever rank computed which expert. returned [num_ranks * capacity * top_k,
// hidden] bf16 as moe_gather_entries wrote it on each peer; x fp32, 16-byte aligned; hidden a
// multiple of 4.
cudaError_t moe_combine_entries(const bf16* returned, const int32_t* chosen_slots,
                                const float* topk_weights, const int32_t* token_rows,
                                int64_t num_tokens, int top_k, int num_ranks, int slots_per_rank,
                                int64_t capacity, int64_t hidden, float* x, cudaStream_t stream);

}  // namespace eep::kernels::cuda
