#include "eep/worker/engine/kv_cache.h"

#include <string>

namespace eep::worker {

KvBlockManager::KvBlockManager(int num_blocks, int block_size)
    : num_blocks_(num_blocks), num_usable_blocks_(num_blocks), block_size_(block_size) {
  EEP_CHECK(num_blocks >= 0 && block_size > 0);
  free_blocks_.reserve(num_blocks);
  for (int block = num_blocks - 1; block >= 0; --block) free_blocks_.push_back(block);
}

void KvBlockManager::set_num_blocks(int num_blocks) {
  EEP_CHECK_MSG(num_blocks >= 1 && num_blocks <= num_blocks_,
                "usable KV blocks " << num_blocks << " outside [1, " << num_blocks_ << "]");
  num_usable_blocks_ = num_blocks;
}

Status KvBlockManager::reserve(uint64_t seq_id, int64_t num_tokens) {
  std::vector<int32_t>& table = tables_[seq_id];
  const int needed = blocks_for(num_tokens) - static_cast<int>(table.size());
  if (needed <= 0) return Status::ok();
  if (needed > num_free_blocks()) {
    if (table.empty()) tables_.erase(seq_id);
    return error(ErrorCode::kResourceExhausted,
                 "KV cache full: sequence " + std::to_string(seq_id) + " needs " +
                     std::to_string(needed) + " more blocks, " + std::to_string(num_free_blocks()) +
                     " of " + std::to_string(num_usable_blocks_) + " are free");
  }
  for (int i = 0; i < needed; ++i) {
    table.push_back(free_blocks_.back());
    free_blocks_.pop_back();
  }
  return Status::ok();
}

void KvBlockManager::release(uint64_t seq_id) {
  auto it = tables_.find(seq_id);
  if (it == tables_.end()) return;
  // Pushed in reverse so that the lowest ids come out first again.
  for (auto block = it->second.rbegin(); block != it->second.rend(); ++block) {
    free_blocks_.push_back(*block);
  }
  tables_.erase(it);
}

const std::vector<int32_t>& KvBlockManager::block_table(uint64_t seq_id) const {
  auto it = tables_.find(seq_id);
  EEP_CHECK_MSG(it != tables_.end(), "no KV blocks for sequence " << seq_id);
  return it->second;
}

int64_t KvBlockManager::slot_of(uint64_t seq_id, int64_t pos) const {
  const std::vector<int32_t>& table = block_table(seq_id);
  const int64_t block_idx = pos / block_size_;
  EEP_CHECK_MSG(pos >= 0 && block_idx < static_cast<int64_t>(table.size()),
                "position " << pos << " of sequence " << seq_id << " is not reserved");
  return static_cast<int64_t>(table[block_idx]) * block_size_ + pos % block_size_;
}

int64_t KvBlockManager::capacity_tokens(uint64_t seq_id) const {
  auto it = tables_.find(seq_id);
  return it == tables_.end() ? 0 : static_cast<int64_t>(it->second.size()) * block_size_;
}

}  // namespace eep::worker
