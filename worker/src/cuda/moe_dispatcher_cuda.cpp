#include "eep/worker/cuda/moe_dispatcher_cuda.h"

#include <algorithm>
#include <climits>
#include <string>

#include "eep/kernels/cuda/grouped_gemm.h"
#include "eep/kernels/cuda/silu_mul.h"

namespace eep::worker {
namespace {

namespace kc = kernels::cuda;
using kc::bf16;
using kc::MoeRowEntry;

// Element counts of every buffer for max_capacity tokens per rank.
struct BufferSizes {
  size_t replica_offsets = 0;
  size_t replica_slots = 0;  // also the slot counters
  size_t chosen_slots = 0;
  size_t token_rows = 0;
  size_t x_rows = 0;    // send/recv hidden rows: [R * C, hidden]
  size_t partials = 0;  // kRankPartials' fp32 sums per row: [R * C, hidden]
  size_t entries = 0;   // MoeRowEntry values and entry_rows: [R * C, k]
  size_t slots_per_rank = 0;
  size_t expert_a = 0;
  size_t expert_b = 0;

  size_t bytes(bool with_group) const {
    const size_t copies = with_group ? 2 : 1;  // receive buffers apart from the send buffers
    return replica_offsets * sizeof(int32_t) + replica_slots * (sizeof(int32_t) + sizeof(int64_t)) +
           chosen_slots * sizeof(int32_t) + token_rows * sizeof(int32_t) +
           copies * (x_rows * sizeof(bf16) + partials * sizeof(float)) +
           entries * (copies * sizeof(MoeRowEntry) + sizeof(int32_t)) +
           (2 * slots_per_rank + 1) * sizeof(int32_t) + (expert_a + expert_b) * sizeof(bf16);
  }
};

BufferSizes buffer_sizes(const Placement& placement, int64_t max_capacity, int hidden,
                         int intermediate, int top_k, MoeCombine combine) {
  const size_t layers = static_cast<size_t>(placement.num_layers);
  const size_t ranks = static_cast<size_t>(placement.num_ranks);
  const size_t capacity = static_cast<size_t>(max_capacity);
  const size_t k = static_cast<size_t>(top_k);
  BufferSizes sizes;
  sizes.replica_offsets = layers * (placement.num_logical_experts + 1);
  sizes.replica_slots = layers * placement.num_slots();
  sizes.chosen_slots = capacity * k;
  sizes.token_rows = capacity * ranks;
  sizes.x_rows = ranks * capacity * hidden;
  sizes.partials = combine == MoeCombine::kRankPartials ? sizes.x_rows : 0;
  sizes.entries = ranks * capacity * k;
  sizes.slots_per_rank = placement.slots_per_rank;
  // Worst case: every row of every peer carries k entries for this rank. kExact's return blocks
  // (an output row per entry, [R * C * k, hidden]) fit in either buffer.
  const size_t max_entries = ranks * capacity * k;
  sizes.expert_a = max_entries * std::max(hidden, intermediate);
  sizes.expert_b = max_entries * std::max(2 * intermediate, hidden);
  return sizes;
}

Status cuda_status(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::ok();
  return error(ErrorCode::kInternal,
               std::string("MoE dispatch on the GPU: ") + what + ": " + cudaGetErrorString(err));
}

// Appends one layer's replica tables: offsets [E + 1] (relative to the layer's slots), then per
// logical expert its slots in increasing slot order (the order ReplicaTable::choose indexes).
void append_replica_tables(const std::vector<int>& row, int num_logical_experts,
                           std::vector<int32_t>& offsets, std::vector<int32_t>& slots) {
  std::vector<std::vector<int32_t>> slots_of(num_logical_experts);
  for (int slot = 0; slot < static_cast<int>(row.size()); ++slot)
    slots_of[row[slot]].push_back(slot);
  int32_t begin = 0;
  for (const auto& expert_slots : slots_of) {
    offsets.push_back(begin);
    slots.insert(slots.end(), expert_slots.begin(), expert_slots.end());
    begin += static_cast<int32_t>(expert_slots.size());
  }
  offsets.push_back(begin);
  EEP_CHECK(begin == static_cast<int32_t>(row.size()));
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

}  // namespace

Result<std::unique_ptr<MoeDispatcherCuda>> MoeDispatcherCuda::create(
    Placement placement, int rank, ProcessGroup* group, int64_t max_capacity, int hidden,
    int intermediate, int top_k, cudaStream_t stream, MoeCombine combine) {
  EEP_RETURN_IF_ERROR(placement.validate());
  const int num_ranks = placement.num_ranks;
  if (rank < 0 || rank >= num_ranks) {
    return error(ErrorCode::kInvalidArgument, "MoE dispatcher: rank " + std::to_string(rank) +
                                                  " outside a placement of " +
                                                  std::to_string(num_ranks) + " ranks");
  }
  if (group == nullptr && num_ranks != 1) {
    return error(ErrorCode::kInvalidArgument,
                 "MoE dispatcher: " + std::to_string(num_ranks) + " ranks need an EP group");
  }
  if (group != nullptr && (group->size() != num_ranks || group->rank() != rank)) {
    return error(ErrorCode::kInvalidArgument,
                 "MoE dispatcher: the EP group (rank " + std::to_string(group->rank()) + " of " +
                     std::to_string(group->size()) + ") does not match the placement (rank " +
                     std::to_string(rank) + " of " + std::to_string(num_ranks) + ")");
  }
  if (hidden <= 0 || hidden % 64 != 0 || intermediate <= 0 || intermediate % 64 != 0) {
    return error(ErrorCode::kInvalidArgument,
                 "MoE dispatcher: hidden (" + std::to_string(hidden) + ") and intermediate (" +
                     std::to_string(intermediate) +
                     ") must be positive multiples of 64 for the grouped GEMM");
  }
  if (top_k < 1 || max_capacity < 0) {
    return error(ErrorCode::kInvalidArgument,
                 "MoE dispatcher: needs top_k >= 1 and max_capacity >= 0 (got " +
                     std::to_string(top_k) + ", " + std::to_string(max_capacity) + ")");
  }
  // Entry positions and row offsets are int32 on the device.
  if (max_capacity > INT32_MAX / num_ranks / top_k) {
    return error(ErrorCode::kInvalidArgument,
                 "MoE dispatcher: max_capacity " + std::to_string(max_capacity) +
                     " is too large for " + std::to_string(num_ranks) + " ranks and top-" +
                     std::to_string(top_k) + "; use a smaller one");
  }
  std::unique_ptr<MoeDispatcherCuda> dispatcher(
      new MoeDispatcherCuda(std::move(placement), rank, group, max_capacity, hidden, intermediate,
                            top_k, stream, combine));
  EEP_RETURN_IF_ERROR(dispatcher->allocate_and_upload());
  return dispatcher;
}

size_t MoeDispatcherCuda::required_device_bytes(const Placement& placement, bool with_group,
                                                int64_t max_capacity, int hidden, int intermediate,
                                                int top_k, MoeCombine combine) {
  return buffer_sizes(placement, max_capacity, hidden, intermediate, top_k, combine)
      .bytes(with_group);
}

MoeDispatcherCuda::MoeDispatcherCuda(Placement placement, int rank, ProcessGroup* group,
                                     int64_t max_capacity, int hidden, int intermediate, int top_k,
                                     cudaStream_t stream, MoeCombine combine)
    : placement_(std::move(placement)),
      rank_(rank),
      group_(group),
      max_capacity_(max_capacity),
      hidden_(hidden),
      intermediate_(intermediate),
      top_k_(top_k),
      stream_(stream),
      combine_(combine),
      peer_bytes_(placement_.num_ranks, 0) {}

MoeDispatcherCuda::~MoeDispatcherCuda() {
  // Work still queued on the stream may use the buffers.
  cudaStreamSynchronize(stream_);
  for (void* p : allocations_) cudaFree(p);
}

template <typename T>
Status MoeDispatcherCuda::allocate(T** ptr, size_t count, const char* what) {
  *ptr = nullptr;
  if (count == 0) return Status::ok();
  void* p = nullptr;
  const size_t bytes = count * sizeof(T);
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();  // do not leave the failure for the next launch check to report
    return error(ErrorCode::kResourceExhausted,
                 "MoE dispatcher: cannot allocate " + std::to_string(bytes) + " device bytes for " +
                     what + " (" + cudaGetErrorString(err) + "); lower max_capacity (" +
                     std::to_string(max_capacity_) + ")");
  }
  allocations_.push_back(p);
  device_bytes_ += bytes;
  *ptr = static_cast<T*>(p);
  // Poisoned (NaN, -1) so that anything read before it is written shows in the results.
  return cuda_status(cudaMemsetAsync(p, 0xFF, bytes, stream_), "poisoning a buffer");
}

Status MoeDispatcherCuda::allocate_and_upload() {
  const BufferSizes sizes =
      buffer_sizes(placement_, max_capacity_, hidden_, intermediate_, top_k_, combine_);
  EEP_RETURN_IF_ERROR(allocate(&replica_offsets_, sizes.replica_offsets, "replica offsets"));
  EEP_RETURN_IF_ERROR(allocate(&replica_slots_, sizes.replica_slots, "replica slots"));
  EEP_RETURN_IF_ERROR(allocate(&slot_counts_, sizes.replica_slots, "slot counts"));
  EEP_RETURN_IF_ERROR(allocate(&chosen_slots_, sizes.chosen_slots, "chosen slots"));
  EEP_RETURN_IF_ERROR(allocate(&token_rows_, sizes.token_rows, "token rows"));
  EEP_RETURN_IF_ERROR(allocate(&send_x_, sizes.x_rows, "sent hidden rows"));
  EEP_RETURN_IF_ERROR(allocate(&send_entries_, sizes.entries, "sent entries"));
  EEP_RETURN_IF_ERROR(allocate(&partial_, sizes.partials, "partial sums"));
  if (group_ != nullptr) {
    EEP_RETURN_IF_ERROR(allocate(&recv_x_, sizes.x_rows, "received hidden rows"));
    EEP_RETURN_IF_ERROR(allocate(&recv_entries_, sizes.entries, "received entries"));
    EEP_RETURN_IF_ERROR(allocate(&returned_, sizes.partials, "returned sums"));
  } else {
    recv_x_ = send_x_;
    recv_entries_ = send_entries_;
    returned_ = partial_;
  }
  EEP_RETURN_IF_ERROR(allocate(&slot_cursors_, sizes.slots_per_rank, "slot cursors"));
  EEP_RETURN_IF_ERROR(allocate(&offsets_, sizes.slots_per_rank + 1, "slot offsets"));
  EEP_RETURN_IF_ERROR(allocate(&entry_rows_, sizes.entries, "entry rows"));
  EEP_RETURN_IF_ERROR(allocate(&expert_a_, sizes.expert_a, "expert inputs"));
  EEP_RETURN_IF_ERROR(allocate(&expert_b_, sizes.expert_b, "expert products"));
  if (sizes.replica_slots > 0) {
    EEP_RETURN_IF_ERROR(cuda_status(
        cudaMemsetAsync(slot_counts_, 0, sizes.replica_slots * sizeof(int64_t), stream_),
        "zeroing the slot counts"));
  }

  // Replica tables, layer after layer.
  std::vector<int32_t> offsets;
  std::vector<int32_t> slots;
  offsets.reserve(sizes.replica_offsets);
  slots.reserve(sizes.replica_slots);
  for (int layer = 0; layer < placement_.num_layers; ++layer) {
    append_replica_tables(placement_.phy2log[layer], placement_.num_logical_experts, offsets,
                          slots);
  }
  EEP_CHECK(offsets.size() == sizes.replica_offsets && slots.size() == sizes.replica_slots);
  if (!offsets.empty()) {
    EEP_RETURN_IF_ERROR(cuda_status(
        cudaMemcpyAsync(replica_offsets_, offsets.data(), offsets.size() * sizeof(int32_t),
                        cudaMemcpyHostToDevice, stream_),
        "uploading the replica offsets"));
    EEP_RETURN_IF_ERROR(
        cuda_status(cudaMemcpyAsync(replica_slots_, slots.data(), slots.size() * sizeof(int32_t),
                                    cudaMemcpyHostToDevice, stream_),
                    "uploading the replica slots"));
  }
  // The host tables must outlive the copies.
  return cuda_status(cudaStreamSynchronize(stream_), "uploading the replica tables");
}

Status MoeDispatcherCuda::set_layer_placement(int layer_idx, std::vector<int> row) {
  if (layer_idx < 0 || layer_idx >= placement_.num_layers) {
    return error(ErrorCode::kInvalidArgument,
                 "MoE dispatch: no layer " + std::to_string(layer_idx));
  }
  EEP_RETURN_IF_ERROR(placement_.validate_row(row, layer_idx));
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  EEP_RETURN_IF_ERROR(cuda_status(cudaStreamIsCapturing(stream_, &capture), "capture query"));
  if (capture != cudaStreamCaptureStatusNone) {
    return error(ErrorCode::kFailedPrecondition,
                 "MoE dispatch: a placement change cannot happen during a graph capture");
  }
  const int num_experts = placement_.num_logical_experts;
  const int num_slots = placement_.num_slots();
  std::vector<int32_t> offsets;
  std::vector<int32_t> slots;
  append_replica_tables(row, num_experts, offsets, slots);
  // The same sizes as at creation: the layer's block of each table is overwritten in place.
  EEP_CHECK(offsets.size() == static_cast<size_t>(num_experts) + 1 &&
            slots.size() == static_cast<size_t>(num_slots));
  EEP_RETURN_IF_ERROR(cuda_status(
      cudaMemcpyAsync(replica_offsets_ + static_cast<int64_t>(layer_idx) * (num_experts + 1),
                      offsets.data(), offsets.size() * sizeof(int32_t), cudaMemcpyHostToDevice,
                      stream_),
      "uploading a layer's replica offsets"));
  EEP_RETURN_IF_ERROR(cuda_status(
      cudaMemcpyAsync(replica_slots_ + static_cast<int64_t>(layer_idx) * num_slots, slots.data(),
                      slots.size() * sizeof(int32_t), cudaMemcpyHostToDevice, stream_),
      "uploading a layer's replica slots"));
  // The host tables must outlive the copies.
  EEP_RETURN_IF_ERROR(
      cuda_status(cudaStreamSynchronize(stream_), "uploading a layer's replica tables"));
  placement_.phy2log[layer_idx] = std::move(row);
  return Status::ok();
}

Status MoeDispatcherCuda::exchange(const void* send, void* recv, size_t bytes_per_peer,
                                   const char* what) {
  if (group_ == nullptr) {
    EEP_CHECK(send == recv);
    return Status::ok();
  }
  std::fill(peer_bytes_.begin(), peer_bytes_.end(), bytes_per_peer);
  Status status = group_->all_to_all_v(send, peer_bytes_.data(), recv, peer_bytes_.data());
  if (!status.is_ok()) {
    return error(status.code(),
                 std::string("MoE dispatch, exchanging ") + what + ": " + status.message());
  }
  return Status::ok();
}

Status MoeDispatcherCuda::forward(int layer_idx, const bf16* h, const int32_t* topk_ids,
                                  const float* topk_weights, int64_t num_tokens, int64_t capacity,
                                  const MoeLayerWeightsCuda& weights, float* x) {
  if (layer_idx < 0 || layer_idx >= placement_.num_layers) {
    return error(ErrorCode::kInvalidArgument,
                 "MoE dispatch: layer " + std::to_string(layer_idx) + " outside the placement's " +
                     std::to_string(placement_.num_layers) + " layers");
  }
  if (num_tokens < 0 || num_tokens > capacity || capacity > max_capacity_) {
    return error(ErrorCode::kInvalidArgument, "MoE dispatch: needs 0 <= num_tokens (" +
                                                  std::to_string(num_tokens) + ") <= capacity (" +
                                                  std::to_string(capacity) + ") <= max_capacity (" +
                                                  std::to_string(max_capacity_) + ")");
  }
  // Every rank passes the same capacity, so every rank skips the exchange together.
  if (capacity == 0) return Status::ok();
  if (num_tokens > 0 && (h == nullptr || topk_ids == nullptr || topk_weights == nullptr ||
                         x == nullptr || !aligned16(h) || !aligned16(x))) {
    return error(ErrorCode::kInvalidArgument,
                 "MoE dispatch: h, topk_ids, topk_weights and x must be device pointers, h and x "
                 "16-byte aligned");
  }
  if (weights.w13 == nullptr || weights.w2 == nullptr) {
    return error(ErrorCode::kInvalidArgument,
                 "MoE dispatch: layer " + std::to_string(layer_idx) + " has no expert weights");
  }

  const int num_ranks = placement_.num_ranks;
  const int num_slots = placement_.num_slots();
  const int slots_per_rank = placement_.slots_per_rank;
  const int64_t num_rows = num_ranks * capacity;  // receive rows: num_ranks blocks of capacity
  const int64_t max_entries = num_rows * top_k_;

  // Sender: route every (token, j), assign rows per destination rank, pack the hidden rows.
  EEP_RETURN_IF_ERROR(cuda_status(
      kc::moe_choose_replicas(
          topk_ids, num_tokens, top_k_,
          replica_offsets_ + static_cast<int64_t>(layer_idx) * (placement_.num_logical_experts + 1),
          replica_slots_ + static_cast<int64_t>(layer_idx) * num_slots,
          placement_.num_logical_experts, slots_per_rank, rank_, chosen_slots_,
          slot_counts_ + static_cast<int64_t>(layer_idx) * num_slots, stream_),
      "choosing replicas"));
  EEP_RETURN_IF_ERROR(cuda_status(
      kc::moe_assign_rows(chosen_slots_, topk_weights, num_tokens, top_k_, num_ranks,
                          slots_per_rank, capacity, token_rows_, send_entries_, stream_),
      "assigning rows"));
  EEP_RETURN_IF_ERROR(cuda_status(
      kc::moe_pack_rows(h, token_rows_, num_tokens, num_ranks, capacity, hidden_, send_x_, stream_),
      "packing rows"));

  EEP_RETURN_IF_ERROR(exchange(send_x_, recv_x_, capacity * hidden_ * sizeof(bf16), "rows"));
  EEP_RETURN_IF_ERROR(exchange(send_entries_, recv_entries_,
                               capacity * top_k_ * sizeof(MoeRowEntry), "row entries"));

  // Receiver: the entries sorted by local slot, the experts as two grouped GEMMs around the
  // activation (expert_a_: input, then activation; expert_b_: gate/up, then output).
  EEP_RETURN_IF_ERROR(cuda_status(
      kc::moe_sort_entries(recv_entries_, recv_x_, num_rows, top_k_, slots_per_rank, hidden_,
                           slot_cursors_, offsets_, entry_rows_, expert_a_, stream_),
      "sorting entries by slot"));
  EEP_RETURN_IF_ERROR(cuda_status(
      kc::grouped_matmul_nt(expert_a_, weights.w13, offsets_, slots_per_rank, max_entries,
                            2 * static_cast<int64_t>(intermediate_), hidden_, expert_b_, stream_),
      "gate/up grouped GEMM"));
  EEP_RETURN_IF_ERROR(cuda_status(kc::silu_mul(expert_b_, offsets_ + slots_per_rank, max_entries,
                                               intermediate_, expert_a_, stream_),
                                  "SwiGLU activation"));
  EEP_RETURN_IF_ERROR(
      cuda_status(kc::grouped_matmul_nt(expert_a_, weights.w2, offsets_, slots_per_rank,
                                        max_entries, hidden_, intermediate_, expert_b_, stream_),
                  "down grouped GEMM"));
  if (combine_ == MoeCombine::kRankPartials) {
    EEP_RETURN_IF_ERROR(
        cuda_status(kc::moe_combine_rows(recv_entries_, entry_rows_, expert_b_, num_rows, top_k_,
                                         slots_per_rank, hidden_, partial_, stream_),
                    "combining rows"));
    // Back to the senders, which add every rank's partial sum to x.
    EEP_RETURN_IF_ERROR(
        exchange(partial_, returned_, capacity * hidden_ * sizeof(float), "partial sums"));
    return cuda_status(kc::moe_combine_tokens(returned_, token_rows_, num_tokens, num_ranks,
                                              capacity, hidden_, x, stream_),
                       "combining tokens");
  }
  // kExact: every entry's output goes back as it is (expert_a_ is free after the down GEMM) and
  // the sender sums a token's outputs in j order.
  EEP_RETURN_IF_ERROR(
      cuda_status(kc::moe_gather_entries(recv_entries_, entry_rows_, expert_b_, num_rows, top_k_,
                                         slots_per_rank, hidden_, expert_a_, stream_),
                  "gathering entry outputs"));
  bf16* returned = group_ != nullptr ? expert_b_ : expert_a_;
  EEP_RETURN_IF_ERROR(
      exchange(expert_a_, returned, capacity * top_k_ * hidden_ * sizeof(bf16), "entry outputs"));
  return cuda_status(
      kc::moe_combine_entries(returned, chosen_slots_, topk_weights, token_rows_, num_tokens,
                              top_k_, num_ranks, slots_per_rank, capacity, hidden_, x, stream_),
      "combining tokens");
}

std::vector<std::vector<int64_t>> MoeDispatcherCuda::take_slot_counts() {
  const int num_layers = placement_.num_layers;
  const int num_slots = placement_.num_slots();
  std::vector<int64_t> flat(static_cast<size_t>(num_layers) * num_slots, 0);
  if (!flat.empty()) {
    const size_t bytes = flat.size() * sizeof(int64_t);
    cudaError_t err =
        cudaMemcpyAsync(flat.data(), slot_counts_, bytes, cudaMemcpyDeviceToHost, stream_);
    if (err == cudaSuccess) err = cudaStreamSynchronize(stream_);
    if (err == cudaSuccess) err = cudaMemsetAsync(slot_counts_, 0, bytes, stream_);
    EEP_CHECK_MSG(err == cudaSuccess,
                  "MoE dispatcher: reading the slot counts failed: " << cudaGetErrorString(err));
  }
  std::vector<std::vector<int64_t>> counts(num_layers);
  for (int layer = 0; layer < num_layers; ++layer) {
    counts[layer].assign(flat.begin() + static_cast<int64_t>(layer) * num_slots,
                         flat.begin() + static_cast<int64_t>(layer + 1) * num_slots);
  }
  return counts;
}

}  // namespace eep::worker
