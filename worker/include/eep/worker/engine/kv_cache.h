// The paged KV cache's bookkeeping (DESIGN.md section 5): a pool of fixed-size blocks, and per
// sequence the list of blocks holding its keys and values in position order. The storage itself
// ([num_layers][num_blocks, block_size, num_kv_heads, head_dim] for K and for V) belongs to the
// model runner; this class only says which block and slot a position lives in. One thread (the
// engine loop) uses it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <vector>

#include "eep/common/status.h"

namespace eep::worker {

class KvBlockManager {
 public:
  KvBlockManager(int num_blocks, int block_size);

  int block_size() const { return block_size_; }
  // The blocks this rank may use: every allocated one, unless a generation's ranks agreed on
  // fewer (set_num_blocks).
  int num_blocks() const { return num_usable_blocks_; }
  // The blocks of the pool (the storage the model runner allocated).
  int num_allocated_blocks() const { return num_blocks_; }
  int num_free_blocks() const {
    const int used = num_blocks_ - static_cast<int>(free_blocks_.size());
    return std::max(0, std::min(static_cast<int>(free_blocks_.size()), num_usable_blocks_ - used));
  }
  // Serve with at most `num_blocks` blocks in use (1 <= num_blocks <= num_allocated_blocks()):
  // what the ranks of a generation agreed on, so that every request fits on every rank. Blocks in
  // use above the limit stay with their sequences; new ones are refused until enough are freed.
  void set_num_blocks(int num_blocks);
  // Blocks needed to hold num_tokens positions.
  int blocks_for(int64_t num_tokens) const {
    return static_cast<int>((num_tokens + block_size_ - 1) / block_size_);
  }

  // Grows `seq_id` so that it can hold num_tokens positions in total (allocating blocks as
  // needed; a new seq_id starts empty). kResourceExhausted, with nothing allocated, when the pool
  // has too few free blocks.
  Status reserve(uint64_t seq_id, int64_t num_tokens);
  // Returns every block of seq_id to the pool. Unknown ids are ignored.
  void release(uint64_t seq_id);
  bool contains(uint64_t seq_id) const { return tables_.count(seq_id) != 0; }

  // The blocks of seq_id in position order.
  const std::vector<int32_t>& block_table(uint64_t seq_id) const;
  // The cache slot (block * block_size + offset) of position `pos` of seq_id, which must be
  // reserved.
  int64_t slot_of(uint64_t seq_id, int64_t pos) const;
  int64_t capacity_tokens(uint64_t seq_id) const;

 private:
  int num_blocks_;
  int num_usable_blocks_;
  int block_size_;
  std::vector<int32_t> free_blocks_;  // a stack; the lowest ids are handed out first
  std::map<uint64_t, std::vector<int32_t>> tables_;
};

}  // namespace eep::worker
