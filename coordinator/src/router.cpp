#include "eep/coordinator/router.h"

#include <algorithm>

#include "eep/common/log.h"
#include "eep/coordinator/output_check.h"

namespace eep::coordinator {

Router::Router(SubmitFn submit, CancelFn cancel, DispatchOptions options)
    : submit_(std::move(submit)), cancel_(std::move(cancel)), options_(options) {}

void Router::set_targets(const std::vector<std::string>& worker_ids) {
  bool has_new = false;
  for (const std::string& id : worker_ids) {
    has_new = has_new || std::find(targets_.begin(), targets_.end(), id) == targets_.end();
  }
  targets_ = worker_ids;
  dispatch();
  if (has_new && !targets_.empty()) move_running();
}

void Router::set_max_num_seqs(const std::string& worker_id, int max_num_seqs) {
  max_num_seqs_[worker_id] = max_num_seqs;
  dispatch();
}

size_t Router::num_on(const std::string& worker_id) const {
  auto it = by_worker_.find(worker_id);
  return it == by_worker_.end() ? 0 : it->second.size();
}

int64_t Router::num_generated_on(const std::string& worker_id) const {
  auto it = generated_by_worker_.find(worker_id);
  return it == generated_by_worker_.end() ? 0 : it->second;
}

std::vector<DispatchTarget> Router::dispatch_targets() const {
  std::vector<DispatchTarget> targets;
  for (const std::string& id : targets_) {
    auto max_seqs = max_num_seqs_.find(id);
    targets.push_back(
        {id, static_cast<int>(num_on(id)), max_seqs == max_num_seqs_.end() ? 0 : max_seqs->second});
  }
  return targets;
}

void Router::send(InFlight& in_flight) {
  protocol::SubmitRequest submit;
  submit.request_id = in_flight.request.id;
  submit.prompt_ids = in_flight.request.prompt_ids;
  submit.output_ids = in_flight.output_ids;
  submit.params.max_tokens = in_flight.request.max_tokens;
  submit.params.temperature = in_flight.request.temperature;
  submit.params.top_p = in_flight.request.top_p;
  submit.params.seed = in_flight.request.seed.value_or(0);
  submit.params.ignore_eos = in_flight.request.ignore_eos;
  submit.params.stop_token_ids = in_flight.request.stop_token_ids;
  submit.params.top_k = in_flight.request.top_k;
  submit.params.min_p = in_flight.request.min_p;
  submit.params.presence_penalty = in_flight.request.presence_penalty;
  submit.params.frequency_penalty = in_flight.request.frequency_penalty;
  submit.params.repetition_penalty = in_flight.request.repetition_penalty;
  submit.params.logprobs = in_flight.request.logprobs;
  by_worker_[in_flight.worker_id].insert(in_flight.request.id);
  submit_(in_flight.worker_id, submit);
}

void Router::dispatch() {
  if (queue_.empty() || targets_.empty()) return;
  std::vector<DispatchTarget> targets = dispatch_targets();
  while (!queue_.empty()) {
    const std::optional<size_t> target_idx = pick_target(targets, options_);
    if (!target_idx) return;  // every target is full: the rest waits for room
    const uint64_t id = queue_.front();
    queue_.pop_front();
    auto it = requests_.find(id);
    if (it == requests_.end()) continue;
    it->second.worker_id = targets[*target_idx].worker_id;
    ++targets[*target_idx].num_assigned;
    send(it->second);
  }
}

void Router::move_running() {
  if (!queue_.empty()) return;  // the new ranks take queued requests first
  const std::vector<DispatchTarget> targets = dispatch_targets();
  std::vector<RunningRequest> running;
  for (size_t idx = 0; idx < targets.size(); ++idx) {
    auto on_worker = by_worker_.find(targets[idx].worker_id);
    if (on_worker == by_worker_.end()) continue;
    for (uint64_t id : on_worker->second) {
      const InFlight& in_flight = requests_.at(id);
      if (in_flight.cancelled) continue;
      running.push_back({id, idx, static_cast<int>(in_flight.request.prompt_ids.size()),
                         static_cast<int>(in_flight.output_ids.size()),
                         in_flight.request.max_tokens});
    }
  }
  for (const RunningMove& move : move_running_plan(targets, running, options_)) {
    InFlight& in_flight = requests_.at(move.request_id);
    const std::string& from = targets[move.from_idx].worker_id;
    const std::string& to = targets[move.to_idx].worker_id;
    EEP_LOG_INFO("request " << move.request_id << " moves from " << from << " to the emptier " << to
                            << " after " << in_flight.output_ids.size() << " tokens");
    by_worker_[from].erase(move.request_id);
    cancel_(from, move.request_id);
    in_flight.worker_id = to;
    ++num_moved_running_;
    send(in_flight);
  }
}

Status Router::route(CompletionRequest request, CompletionCallback callback) {
  if (targets_.empty() && !hold_) {
    return error(ErrorCode::kUnavailable, "no active worker can take requests right now");
  }
  const uint64_t id = request.id;
  num_prompt_tokens_ += static_cast<int64_t>(request.prompt_ids.size());
  InFlight& in_flight = requests_[id];
  in_flight.request = std::move(request);
  in_flight.callback = std::move(callback);
  queue_.push_back(id);
  dispatch();
  return Status::ok();
}

void Router::finish(std::map<uint64_t, InFlight>::iterator it, const std::string& reason,
                    const Status& status) {
  InFlight& in_flight = it->second;
  if (!in_flight.worker_id.empty()) by_worker_[in_flight.worker_id].erase(it->first);
  CompletionEvent event;
  event.request_id = it->first;
  event.finished = true;
  event.finish_reason = reason;
  event.status = status;
  event.prompt_tokens = static_cast<int>(in_flight.request.prompt_ids.size());
  event.completion_tokens = static_cast<int>(in_flight.output_ids.size());
  if (status.is_ok()) {
    ++num_finished_;
  } else {
    ++num_failed_;
  }
  in_flight.callback(event);
  requests_.erase(it);
  dispatch();  // its rank has room again
}

void Router::cancel(uint64_t request_id) {
  auto it = requests_.find(request_id);
  if (it == requests_.end() || it->second.cancelled) return;
  if (it->second.worker_id.empty()) {  // still queued: nobody else knows of it
    queue_.erase(std::find(queue_.begin(), queue_.end(), request_id));
    finish(it, "cancelled", Status::ok());
    return;
  }
  it->second.cancelled = true;
  cancel_(it->second.worker_id, request_id);
  // The worker confirms with a "cancelled" output; until then the request stays accounted.
}

void Router::on_outputs(const std::string& worker_id,
                        const std::vector<protocol::RequestOutput>& outputs) {
  for (const protocol::RequestOutput& output : outputs) {
    auto it = requests_.find(output.request_id);
    if (it == requests_.end() || it->second.worker_id != worker_id) continue;  // stale
    InFlight& in_flight = it->second;
    const Status valid = check_output(
        output, OutputLimits{vocab_size_, in_flight.output_ids.size(), in_flight.request.max_tokens,
                             in_flight.request.logprobs});
    if (!valid.is_ok()) {
      if (on_suspect_) on_suspect_(worker_id, valid);
      cancel_(worker_id, output.request_id);
      finish(it, "error",
             error(ErrorCode::kInternal, "the worker serving this request failed; retry"));
      continue;
    }
    in_flight.output_ids.insert(in_flight.output_ids.end(), output.new_tokens.begin(),
                                output.new_tokens.end());
    num_generated_tokens_ += static_cast<int64_t>(output.new_tokens.size());
    generated_by_worker_[worker_id] += static_cast<int64_t>(output.new_tokens.size());
    if (output.finished) {
      const Status status = output.finish_reason == "error"
                                ? error(ErrorCode::kInternal, output.error)
                                : Status::ok();
      if (!output.new_tokens.empty()) {
        CompletionEvent tokens;
        tokens.request_id = output.request_id;
        tokens.new_tokens = output.new_tokens;
        tokens.logprobs = output.logprobs;
        tokens.prompt_tokens = static_cast<int>(in_flight.request.prompt_ids.size());
        tokens.completion_tokens = static_cast<int>(in_flight.output_ids.size());
        in_flight.callback(tokens);
      }
      finish(it, output.finish_reason, status);
      continue;
    }
    if (output.new_tokens.empty()) continue;
    CompletionEvent event;
    event.request_id = output.request_id;
    event.new_tokens = output.new_tokens;
    event.logprobs = output.logprobs;
    event.prompt_tokens = static_cast<int>(in_flight.request.prompt_ids.size());
    event.completion_tokens = static_cast<int>(in_flight.output_ids.size());
    in_flight.callback(event);
  }
}

size_t Router::fail_queued(const std::string& why) {
  const std::deque<uint64_t> queued = std::move(queue_);
  queue_.clear();
  for (uint64_t id : queued) {
    if (auto it = requests_.find(id); it != requests_.end()) {
      finish(it, "error", error(ErrorCode::kUnavailable, why));
    }
  }
  return queued.size();
}

void Router::on_worker_gone(const std::string& worker_id, const std::string& reason) {
  move_requests(worker_id, reason, false);
}

size_t Router::migrate(const std::string& worker_id, const std::string& reason) {
  return move_requests(worker_id, reason, true);
}

size_t Router::move_requests(const std::string& worker_id, const std::string& reason, bool alive) {
  auto on_worker = by_worker_.find(worker_id);
  if (on_worker == by_worker_.end()) return 0;
  const std::set<uint64_t> ids = std::move(on_worker->second);
  by_worker_.erase(on_worker);
  const bool has_other_target =
      std::any_of(targets_.begin(), targets_.end(),
                  [&worker_id](const std::string& target) { return target != worker_id; });
  std::vector<uint64_t> moved;
  for (uint64_t id : ids) {
    auto it = requests_.find(id);
    if (it == requests_.end()) continue;
    InFlight& in_flight = it->second;
    if (in_flight.cancelled) {
      // The client went away; the worker's confirmation need not be waited for.
      finish(it, "cancelled", Status::ok());
      continue;
    }
    if (!has_other_target && alive) {  // it stays and finishes where it is
      by_worker_[worker_id].insert(id);
      continue;
    }
    if (!has_other_target && !hold_) {
      finish(it, "error",
             error(ErrorCode::kUnavailable, "worker " + worker_id + " was lost (" + reason +
                                                ") and no other worker can continue the request"));
      continue;
    }
    if (alive) {
      EEP_LOG_INFO("request " << id << " migrates from " << worker_id << " (" << reason
                              << ") after " << in_flight.output_ids.size() << " tokens");
      cancel_(worker_id, id);
    } else {
      EEP_LOG_WARN("request " << id << " moves from " << worker_id << " (" << reason << ") after "
                              << in_flight.output_ids.size() << " tokens"
                              << (has_other_target ? "" : "; it waits for the fleet to form"));
    }
    in_flight.worker_id.clear();
    ++num_resubmitted_;
    moved.push_back(id);
  }
  // Ahead of everything queued (they are older), in arrival order.
  queue_.insert(queue_.begin(), moved.begin(), moved.end());
  dispatch();
  return moved.size();
}

}  // namespace eep::coordinator
