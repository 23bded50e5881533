#include "eep/worker/cpu/moe_dispatcher_cpu.h"

#include <cstring>
#include <numeric>
#include <string>

namespace eep::worker {

MoeDispatcher::MoeDispatcher(Placement placement, int rank, ProcessGroup* group)
    : placement_(std::move(placement)), replicas_(placement_), rank_(rank), group_(group) {
  EEP_CHECK(placement_.validate().is_ok());
  EEP_CHECK(group_ != nullptr || placement_.num_ranks == 1);
  EEP_CHECK(group_ == nullptr || group_->size() == placement_.num_ranks);
  slot_counts_.assign(placement_.num_layers, std::vector<int64_t>(placement_.num_slots(), 0));
}

std::vector<std::vector<int64_t>> MoeDispatcher::take_slot_counts() {
  std::vector<std::vector<int64_t>> counts = slot_counts_;
  for (auto& layer : slot_counts_) std::fill(layer.begin(), layer.end(), 0);
  return counts;
}

Status MoeDispatcher::set_layer_placement(int layer_idx, std::vector<int> row) {
  if (layer_idx < 0 || layer_idx >= placement_.num_layers) {
    return error(ErrorCode::kInvalidArgument,
                 "MoE dispatch: no layer " + std::to_string(layer_idx));
  }
  EEP_RETURN_IF_ERROR(placement_.validate_row(row, layer_idx));
  replicas_.set_layer(layer_idx, row);
  placement_.phy2log[layer_idx] = std::move(row);
  return Status::ok();
}

Status MoeDispatcher::forward(int layer_idx, const float* x, const int32_t* topk_ids,
                              const float* topk_weights, int64_t num_tokens, int top_k, int hidden,
                              const ExpertFn& compute, float* out) {
  const int num_ranks = placement_.num_ranks;
  const int64_t num_entries = num_tokens * top_k;
  // A row on the wire: the local slot index (bit-cast into a float) then the hidden vector.
  const int64_t row_floats = hidden + 1;

  // 1. Route every (token, j) to a replica; order entries by destination rank (stable).
  std::vector<int> dest_rank(num_entries);
  std::vector<int> dest_local(num_entries);
  std::vector<int64_t> send_count(num_ranks, 0);
  for (int64_t e = 0; e < num_entries; ++e) {
    const int slot = replicas_.choose(layer_idx, topk_ids[e], rank_, static_cast<uint64_t>(e));
    dest_rank[e] = placement_.rank_of_slot(slot);
    dest_local[e] = placement_.local_idx_of_slot(slot);
    ++send_count[dest_rank[e]];
    ++slot_counts_[layer_idx][slot];
  }
  std::vector<int64_t> send_offset(num_ranks, 0);
  std::exclusive_scan(send_count.begin(), send_count.end(), send_offset.begin(), int64_t{0});
  std::vector<int64_t> entry_pos(num_entries);  // where entry e sits in the send buffer
  {
    std::vector<int64_t> next = send_offset;
    for (int64_t e = 0; e < num_entries; ++e) entry_pos[e] = next[dest_rank[e]]++;
  }
  send_rows_.resize(num_entries * row_floats);
  for (int64_t e = 0; e < num_entries; ++e) {
    float* row = send_rows_.data() + entry_pos[e] * row_floats;
    const int32_t local = dest_local[e];
    std::memcpy(row, &local, sizeof(local));
    std::memcpy(row + 1, x + (e / top_k) * hidden, hidden * sizeof(float));
  }

  // 2. Exchange counts, then rows.
  std::vector<int64_t> recv_count(num_ranks, 0);
  if (group_ != nullptr) {
    std::vector<size_t> count_bytes(num_ranks, sizeof(int64_t));
    EEP_RETURN_IF_ERROR(group_->all_to_all_v(send_count.data(), count_bytes.data(),
                                             recv_count.data(), count_bytes.data()));
  } else {
    recv_count = send_count;
  }
  const int64_t num_recv = std::accumulate(recv_count.begin(), recv_count.end(), int64_t{0});
  std::vector<size_t> send_bytes(num_ranks), recv_bytes(num_ranks);
  for (int r = 0; r < num_ranks; ++r) {
    send_bytes[r] = send_count[r] * row_floats * sizeof(float);
    recv_bytes[r] = recv_count[r] * row_floats * sizeof(float);
  }
  recv_rows_.resize(num_recv * row_floats);
  if (group_ != nullptr) {
    EEP_RETURN_IF_ERROR(group_->all_to_all_v(send_rows_.data(), send_bytes.data(),
                                             recv_rows_.data(), recv_bytes.data()));
  } else {
    recv_rows_ = send_rows_;
  }

  // 3. Compute: rows grouped by local slot (in arrival order within a slot), each slot's expert
  // on its rows, results written back in arrival order. The result reuses the rows' buffer (the
  // slot header is no longer needed): row i's output at recv_rows_[i * row_floats + 1].
  std::vector<std::vector<int64_t>> rows_of_slot(placement_.slots_per_rank);
  for (int64_t i = 0; i < num_recv; ++i) {
    int32_t local = 0;
    std::memcpy(&local, recv_rows_.data() + i * row_floats, sizeof(local));
    EEP_CHECK_MSG(local >= 0 && local < placement_.slots_per_rank, "bad slot " << local);
    rows_of_slot[local].push_back(i);
  }
  for (int local = 0; local < placement_.slots_per_rank; ++local) {
    const auto& rows = rows_of_slot[local];
    if (rows.empty()) continue;
    const int64_t n = static_cast<int64_t>(rows.size());
    expert_in_.resize(n * hidden);
    expert_out_.resize(n * hidden);
    for (int64_t r = 0; r < n; ++r) {
      std::memcpy(expert_in_.data() + r * hidden, recv_rows_.data() + rows[r] * row_floats + 1,
                  hidden * sizeof(float));
    }
    compute(layer_idx, local, expert_in_.data(), n, expert_out_.data());
    for (int64_t r = 0; r < n; ++r) {
      std::memcpy(recv_rows_.data() + rows[r] * row_floats + 1, expert_out_.data() + r * hidden,
                  hidden * sizeof(float));
    }
  }

  // 4. Return the results the way they came (the counts swap roles), then combine in j order.
  if (group_ != nullptr) {
    EEP_RETURN_IF_ERROR(group_->all_to_all_v(recv_rows_.data(), recv_bytes.data(),
                                             send_rows_.data(), send_bytes.data()));
  } else {
    send_rows_ = recv_rows_;
  }
  for (int64_t t = 0; t < num_tokens; ++t) {
    float* out_row = out + t * hidden;
    std::fill(out_row, out_row + hidden, 0.0f);
    for (int j = 0; j < top_k; ++j) {
      const int64_t e = t * top_k + j;
      const float w = topk_weights[e];
      const float* y = send_rows_.data() + entry_pos[e] * row_floats + 1;
      for (int h = 0; h < hidden; ++h) out_row[h] += w * y[h];
    }
  }
  return Status::ok();
}

}  // namespace eep::worker
