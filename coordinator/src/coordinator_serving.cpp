// The coordinator's serving side: requests from the HTTP threads (through the inbox) to the
// router, wakes for an idle fleet, and the state the HTTP side reads.
#include <algorithm>
#include <chrono>

#include "eep/common/log.h"
#include "eep/coordinator/coordinator.h"

namespace eep::coordinator {

using protocol::WorkerState;

std::vector<std::string> Coordinator::active_ids() const {
  std::vector<std::string> ids;
  for (const WorkerRecord* worker : membership_.active_by_rank()) ids.push_back(worker->id);
  return ids;
}

std::vector<std::string> Coordinator::serving_targets() const {
  std::vector<std::string> ids = active_ids();
  for (const std::string& id : scale_->draining()) {
    ids.erase(std::remove(ids.begin(), ids.end(), id), ids.end());
  }
  return ids;
}

void Coordinator::drain_inbox() {
  for (ServingInbox::Item& item : inbox_.drain()) {
    if (auto* cancel = std::get_if<ServingInbox::Cancel>(&item)) {
      router_.cancel(cancel->request_id);
      continue;
    }
    auto& submit = std::get<ServingInbox::Submit>(item);
    // Every accepted request finishes exactly once; the inbox counts it out then.
    CompletionCallback callback =
        [this, inner = std::move(submit.callback)](const CompletionEvent& event) {
          if (event.finished) inbox_.finished_one();
          inner(event);
        };
    const uint64_t id = submit.request.id;
    const int prompt_tokens = static_cast<int>(submit.request.prompt_ids.size());
    Status routed = router_.route(std::move(submit.request), callback);
    if (!routed.is_ok()) {
      CompletionEvent failed;
      failed.request_id = id;
      failed.finished = true;
      failed.finish_reason = "error";
      failed.status = routed;
      failed.prompt_tokens = prompt_tokens;
      callback(failed);
    }
  }
}

void Coordinator::hold_requests(Clock::time_point now) {
  const auto limit = std::chrono::seconds(config_.request_hold_s);
  // Held while the keeper forms the fleet again: not once it gave up, nor at shutdown.
  const bool hold =
      limit.count() > 0 && !shutting_down_ && !keeper_.gave_up() && keeper_.target() > 0;
  router_.set_hold(hold);
  if (router_.has_targets()) {
    no_target_since_.reset();
    return;
  }
  if (!no_target_since_) no_target_since_ = now;
  if (router_.num_queued() == 0 || (hold && now - *no_target_since_ < limit)) return;
  const std::string why =
      hold ? "no worker could serve the request within " + std::to_string(config_.request_hold_s) +
                 " s (--request-hold-s) of the fleet losing its last one"
           : "no worker can serve the request and none is coming (" +
                 std::string(shutting_down_       ? "the coordinator shuts down"
                             : keeper_.gave_up()  ? "the coordinator gave up forming the fleet"
                             : limit.count() == 0 ? "--request-hold-s is 0"
                                                  : "no target size") +
                 ")";
  const size_t failed = router_.fail_queued(why);
  EEP_LOG_WARN(failed << " held requests failed: " << why);
}

void Coordinator::on_need_wake() {
  // Every rank stepping in a generation (or joining or leaving one) hears the same epochs.
  ++wake_epoch_;
  for (const WorkerRecord* worker : membership_.all()) {
    if (worker->state == WorkerState::kActive || worker->state == WorkerState::kJoining ||
        worker->state == WorkerState::kLeaving) {
      send_to_worker(worker->id, protocol::Wake{wake_epoch_});
    }
  }
}

void Coordinator::publish_serving_state() {
  router_.set_targets(serving_targets());
  ServingStats stats;
  for (const WorkerRecord* worker : membership_.active_by_rank()) {
    stats.requests_running += worker->load.num_running;
    stats.requests_waiting += worker->load.num_waiting;
  }
  stats.requests_finished = router_.num_finished();
  stats.requests_failed = router_.num_failed();
  stats.prompt_tokens = router_.num_prompt_tokens();
  stats.generation_tokens = router_.num_generated_tokens();
  stats.fleet_size = static_cast<int>(membership_.active_by_rank().size());
  stats.generation = membership_.generation();
  ModelInfo info;
  if (capacity_) {
    info.name = config_.served_model_name.empty() ? capacity_->model : config_.served_model_name;
    info.vocab_size = capacity_->vocab_size;
    info.max_model_len = capacity_->max_model_len;
    info.tokenizer = model_text_.tokenizer;
    info.chat_template = model_text_.chat_template;
    // Generated models without a tokenizer.json: each byte of a text prompt is a token.
    info.byte_tokenizer = !info.tokenizer && capacity_->vocab_size >= 256;
  }
  info.created = started_unix_;
  inbox_.publish(capacity_.has_value() && router_.has_targets(),
                 capacity_.has_value() && (router_.has_targets() || router_.holding()), info,
                 stats);
}

}  // namespace eep::coordinator
