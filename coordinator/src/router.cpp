#include "eep/coordinator/router.h"

#include "eep/common/log.h"
#include "eep/coordinator/output_check.h"

namespace eep::coordinator {

Router::Router(SubmitFn submit, CancelFn cancel)
    : submit_(std::move(submit)), cancel_(std::move(cancel)) {}

void Router::set_targets(const std::vector<std::string>& worker_ids) {
  targets_ = worker_ids;
}

size_t Router::num_on(const std::string& worker_id) const {
  auto it = by_worker_.find(worker_id);
  return it == by_worker_.end() ? 0 : it->second.size();
}

std::string Router::least_loaded() const {
  std::string best;
  size_t best_load = SIZE_MAX;
  for (const std::string& id : targets_) {  // ties go to the lower rank
    const size_t load = num_on(id);
    if (load < best_load) {
      best = id;
      best_load = load;
    }
  }
  return best;
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
  by_worker_[in_flight.worker_id].insert(in_flight.request.id);
  submit_(in_flight.worker_id, submit);
}

Status Router::route(CompletionRequest request, CompletionCallback callback) {
  const std::string worker = least_loaded();
  if (worker.empty()) {
    return error(ErrorCode::kUnavailable, "no active worker can take requests right now");
  }
  const uint64_t id = request.id;
  num_prompt_tokens_ += static_cast<int64_t>(request.prompt_ids.size());
  InFlight& in_flight = requests_[id];
  in_flight.request = std::move(request);
  in_flight.callback = std::move(callback);
  in_flight.worker_id = worker;
  send(in_flight);
  return Status::ok();
}

void Router::finish(std::map<uint64_t, InFlight>::iterator it, const std::string& reason,
                    const Status& status) {
  InFlight& in_flight = it->second;
  by_worker_[in_flight.worker_id].erase(it->first);
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
}

void Router::cancel(uint64_t request_id) {
  auto it = requests_.find(request_id);
  if (it == requests_.end() || it->second.cancelled) return;
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
    const Status valid = check_output(output, OutputLimits{vocab_size_, in_flight.output_ids.size(),
                                                           in_flight.request.max_tokens});
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
    if (output.finished) {
      const Status status = output.finish_reason == "error"
                                ? error(ErrorCode::kInternal, output.error)
                                : Status::ok();
      if (!output.new_tokens.empty()) {
        CompletionEvent tokens;
        tokens.request_id = output.request_id;
        tokens.new_tokens = output.new_tokens;
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
    event.prompt_tokens = static_cast<int>(in_flight.request.prompt_ids.size());
    event.completion_tokens = static_cast<int>(in_flight.output_ids.size());
    in_flight.callback(event);
  }
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
  size_t num_moved = 0;
  for (uint64_t id : ids) {
    auto it = requests_.find(id);
    if (it == requests_.end()) continue;
    InFlight& in_flight = it->second;
    if (in_flight.cancelled) {
      // The client went away; the worker's confirmation need not be waited for.
      finish(it, "cancelled", Status::ok());
      continue;
    }
    const std::string target = least_loaded();
    if (target.empty() || target == worker_id) {
      if (alive) {  // it stays and finishes where it is
        by_worker_[worker_id].insert(id);
        continue;
      }
      finish(it, "error",
             error(ErrorCode::kUnavailable, "worker " + worker_id + " was lost (" + reason +
                                                ") and no other worker can continue the request"));
      continue;
    }
    if (alive) {
      EEP_LOG_INFO("request " << id << " migrates from " << worker_id << " (" << reason << ") to "
                              << target << " after " << in_flight.output_ids.size() << " tokens");
      cancel_(worker_id, id);
    } else {
      EEP_LOG_WARN("request " << id << " moves from " << worker_id << " (" << reason << ") to "
                              << target << " after " << in_flight.output_ids.size() << " tokens");
    }
    in_flight.worker_id = target;
    ++num_resubmitted_;
    ++num_moved;
    send(in_flight);
  }
  return num_moved;
}

}  // namespace eep::coordinator
