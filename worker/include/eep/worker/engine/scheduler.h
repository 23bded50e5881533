// Continuous batching for one rank (DESIGN.md section 5, the engine's scheduler): which tokens of
// which requests go into the next forward step. Running requests first (decode tokens, then the
// rest of chunked prefills), then waiting ones, within a token budget and a sequence limit. A
// request's KV blocks are reserved as it is scheduled; when the cache is full the newest running
// request is preempted (its blocks released, its prompt and output recomputed later), so the
// older ones keep going. One thread (the engine loop) uses it.
#pragma once

#include <cstdint>
#include <deque>
#include <list>
#include <optional>
#include <string>
#include <vector>

#include "eep/common/protocol.h"
#include "eep/common/status.h"
#include "eep/worker/engine/kv_cache.h"

namespace eep::worker {

struct SchedulerConfig {
  int max_num_seqs = 256;             // running requests at most
  int max_num_batched_tokens = 2048;  // tokens per step at most
  int max_model_len = 4096;           // prompt + output at most
};

struct EngineRequest {
  uint64_t id = 0;
  std::vector<int32_t> prompt;
  std::vector<int32_t> output;  // generated so far (a migrated request arrives with some)
  protocol::SamplingParams params;
  int64_t num_computed = 0;  // positions whose keys and values are in the KV cache
  int num_preemptions = 0;

  int64_t context_len() const { return static_cast<int64_t>(prompt.size() + output.size()); }
  // The token at `pos` of prompt + output.
  int32_t token_at(int64_t pos) const {
    return pos < static_cast<int64_t>(prompt.size()) ? prompt[pos] : output[pos - prompt.size()];
  }
};

// Tokens [start, start + num_tokens) of a request's context go into this step. When they reach
// the end of the context the step samples the request's next token.
struct ScheduledChunk {
  EngineRequest* request = nullptr;
  int64_t start = 0;
  int64_t num_tokens = 0;
  bool samples() const { return start + num_tokens == request->context_len(); }
};

// A request that left the scheduler, with why.
struct FinishedRequest {
  uint64_t id = 0;
  std::string finish_reason;  // "length", "stop", "cancelled", "error"
  std::string error;
};

class Scheduler {
 public:
  Scheduler(KvBlockManager& blocks, SchedulerConfig config, std::vector<int32_t> eos_token_ids);

  // kInvalidArgument when the request cannot fit max_model_len or the whole KV cache, or is
  // already done; kAlreadyExists for a duplicate id.
  Status add(EngineRequest request);
  // Removes the request wherever it is and frees its blocks. False when unknown.
  bool cancel(uint64_t id);

  // The next step's chunks (KV reserved for them). Empty when there is nothing to run.
  std::vector<ScheduledChunk> schedule();
  // After the step: appends sampled tokens (one per chunk that samples(), in chunk order),
  // advances num_computed, and returns the requests that finished (their blocks are freed).
  std::vector<FinishedRequest> update(const std::vector<ScheduledChunk>& chunks,
                                      const std::vector<int32_t>& sampled);

  bool has_work() const { return !running_.empty() || !waiting_.empty(); }
  int num_running() const { return static_cast<int>(running_.size()); }
  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  const EngineRequest* find(uint64_t id) const;
  const SchedulerConfig& config() const { return config_; }
  // A new generation's agreed KV size (EngineCore): requests admitted from now on must fit it.
  void set_max_model_len(int max_model_len) { config_.max_model_len = max_model_len; }

 private:
  // Stop reason after a token was appended, or nullopt to go on.
  std::optional<std::string> stop_reason(const EngineRequest& request) const;
  void preempt(std::list<EngineRequest>::iterator it);

  KvBlockManager& blocks_;
  SchedulerConfig config_;
  std::vector<int32_t> eos_token_ids_;
  std::list<EngineRequest> running_;   // in admission order (stable addresses)
  std::deque<EngineRequest> waiting_;  // preempted ones go to the front
};

}  // namespace eep::worker
