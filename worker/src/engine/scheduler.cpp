#include "eep/worker/engine/scheduler.h"

#include <algorithm>

#include "eep/common/log.h"

namespace eep::worker {

Scheduler::Scheduler(KvBlockManager& blocks, SchedulerConfig config,
                     std::vector<int32_t> eos_token_ids)
    : blocks_(blocks), config_(config), eos_token_ids_(std::move(eos_token_ids)) {}

Status Scheduler::add(EngineRequest request) {
  if (find(request.id) != nullptr) {
    return error(ErrorCode::kAlreadyExists, "request " + std::to_string(request.id) + " exists");
  }
  if (request.prompt.empty()) return error(ErrorCode::kInvalidArgument, "empty prompt");
  const int64_t final_len = static_cast<int64_t>(request.prompt.size()) + request.params.max_tokens;
  if (std::min<int64_t>(final_len, config_.max_model_len) >
      int64_t{blocks_.num_blocks()} * blocks_.block_size()) {
    return error(ErrorCode::kInvalidArgument, "request " + std::to_string(request.id) +
                                                  " needs more KV cache than this rank has");
  }
  if (request.context_len() >= config_.max_model_len ||
      static_cast<int>(request.output.size()) >= request.params.max_tokens) {
    return error(ErrorCode::kInvalidArgument,
                 "request " + std::to_string(request.id) + " has nothing left to generate");
  }
  request.num_computed = 0;  // whatever a migrated request had elsewhere is recomputed here
  waiting_.push_back(std::move(request));
  return Status::ok();
}

const EngineRequest* Scheduler::find(uint64_t id) const {
  for (const auto& r : running_) {
    if (r.id == id) return &r;
  }
  for (const auto& r : waiting_) {
    if (r.id == id) return &r;
  }
  return nullptr;
}

bool Scheduler::cancel(uint64_t id) {
  for (auto it = running_.begin(); it != running_.end(); ++it) {
    if (it->id == id) {
      blocks_.release(id);
      running_.erase(it);
      return true;
    }
  }
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    if (it->id == id) {
      blocks_.release(id);
      waiting_.erase(it);
      return true;
    }
  }
  return false;
}

void Scheduler::preempt(std::list<EngineRequest>::iterator it) {
  EEP_LOG_DEBUG("preempting request " << it->id << " (KV cache full); it will be recomputed");
  blocks_.release(it->id);
  it->num_computed = 0;
  ++it->num_preemptions;
  waiting_.push_front(std::move(*it));
  running_.erase(it);
}

std::vector<ScheduledChunk> Scheduler::schedule() {
  std::vector<ScheduledChunk> chunks;
  int64_t budget = config_.max_num_batched_tokens;
  // Running requests, oldest first; the newest is preempted when the cache runs out.
  for (auto it = running_.begin(); it != running_.end() && budget > 0;) {
    const int64_t needed = it->context_len() - it->num_computed;
    const int64_t num_tokens = std::min(needed, budget);
    bool reserved = blocks_.reserve(it->id, it->num_computed + num_tokens).is_ok();
    while (!reserved && std::prev(running_.end()) != it) {
      preempt(std::prev(running_.end()));
      reserved = blocks_.reserve(it->id, it->num_computed + num_tokens).is_ok();
    }
    if (!reserved) {  // it is the newest itself: it waits
      auto next = std::next(it);
      preempt(it);
      it = next;
      continue;
    }
    chunks.push_back({&*it, it->num_computed, num_tokens});
    budget -= num_tokens;
    ++it;
  }
  // Waiting requests, in order, while budget, sequence slots and blocks last.
  while (!waiting_.empty() && budget > 0 &&
         static_cast<int>(running_.size()) < config_.max_num_seqs) {
    EngineRequest& next = waiting_.front();
    const int64_t num_tokens = std::min(next.context_len() - next.num_computed, budget);
    if (!blocks_.reserve(next.id, next.num_computed + num_tokens).is_ok()) break;
    running_.push_back(std::move(next));
    waiting_.pop_front();
    EngineRequest& admitted = running_.back();
    chunks.push_back({&admitted, admitted.num_computed, num_tokens});
    budget -= num_tokens;
  }
  return chunks;
}

std::optional<std::string> Scheduler::stop_reason(const EngineRequest& request) const {
  const int32_t last = request.output.back();
  if (!request.params.ignore_eos &&
      std::find(eos_token_ids_.begin(), eos_token_ids_.end(), last) != eos_token_ids_.end()) {
    return "stop";
  }
  const auto& stops = request.params.stop_token_ids;
  if (std::find(stops.begin(), stops.end(), last) != stops.end()) return "stop";
  if (static_cast<int>(request.output.size()) >= request.params.max_tokens ||
      request.context_len() >= config_.max_model_len) {
    return "length";
  }
  return std::nullopt;
}

std::vector<FinishedRequest> Scheduler::update(const std::vector<ScheduledChunk>& chunks,
                                               const std::vector<int32_t>& sampled) {
  std::vector<FinishedRequest> finished;
  size_t sampled_idx = 0;
  std::vector<uint64_t> done;
  for (const ScheduledChunk& chunk : chunks) {
    EngineRequest& request = *chunk.request;
    const bool samples = chunk.samples();
    request.num_computed = chunk.start + chunk.num_tokens;
    if (!samples) continue;
    EEP_CHECK(sampled_idx < sampled.size());
    request.output.push_back(sampled[sampled_idx++]);
    if (auto reason = stop_reason(request)) {
      finished.push_back({request.id, *reason, ""});
      done.push_back(request.id);
    }
  }
  EEP_CHECK(sampled_idx == sampled.size());
  for (uint64_t id : done) cancel(id);
  return finished;
}

}  // namespace eep::worker
