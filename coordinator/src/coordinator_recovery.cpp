// The coordinator's side of fault tolerance (docs/fault_tolerance.md): heartbeats from the
// workers' heartbeat sockets, members that report their generation lost, hung members, and the
// fleet keeper's recoveries and returns to the target size.
#include <algorithm>

#include "eep/common/text.h"
#include "eep/coordinator/coordinator.h"

namespace eep::coordinator {

void Coordinator::on_heartbeat(const std::string& worker_id, const protocol::Envelope& envelope) {
  WorkerRecord* worker = membership_.find(worker_id);
  if (worker == nullptr) return;  // not registered yet
  // Declared dead and alive after all: an idle worker of a host that was cut off sends nothing
  // but its heartbeats, so they are what tells it.
  if (worker->state == WorkerState::kDead)
    return tell_dead_worker_to_register_again(*worker, Clock::now());
  membership_.heard_from(worker_id, Clock::now());
  auto beat = protocol::parse_body<protocol::Heartbeat>(envelope);
  if (beat.is_ok()) worker->load = beat->load;
}

void Coordinator::tell_dead_worker_to_register_again(const WorkerRecord& worker,
                                                     Clock::time_point now) {
  auto [sent, first] = register_again_sent_.try_emplace(worker.id, now);
  if (!first && now - sent->second < std::chrono::milliseconds(config_.heartbeat_timeout_ms)) {
    return;
  }
  sent->second = now;
  EEP_LOG_WARN("worker " << worker.id << " on " << worker.host << " was declared DEAD ("
                         << worker.reason << ") and speaks again; telling it to register anew "
                         << "as a spare");
  send_to_worker(worker.id, protocol::Shutdown{"declared dead (" + worker.reason +
                                                   "); start again and register as a spare",
                                               false, true});
}

void Coordinator::on_generation_lost(const std::string& worker_id,
                                     const protocol::Envelope& envelope) {
  auto lost = protocol::parse_body<protocol::GenerationLost>(envelope);
  if (!lost.is_ok()) {
    EEP_LOG_WARN("from " << worker_id << ": " << lost.status().to_string());
    return;
  }
  const WorkerRecord* worker = membership_.find(worker_id);
  EEP_LOG_WARN("worker " << worker_id << " (rank " << worker->rank << ") lost generation "
                         << lost->generation << ": " << printable(lost->reason, 300));
  // Only the live generation's members count; an older generation's report is late news.
  if (lost->generation != membership_.generation() || worker->state != WorkerState::kActive) {
    return;
  }
  if (keeper_.broken()) return;  // a lost member explains it; the recovery comes
  lost_reports_.insert(worker_id);
  if (!first_lost_report_) first_lost_report_ = Clock::now();
}

void Coordinator::check_lost_reports(Clock::time_point now) {
  if (!first_lost_report_) return;
  if (keeper_.broken()) {  // a member was found lost meanwhile
    lost_reports_.clear();
    first_lost_report_.reset();
    return;
  }
  // A member that died is seen in this time (its process, or its heartbeats); one that lives
  // and did not report within it hangs outside any collective, or in one its peers left.
  if (now - *first_lost_report_ < std::chrono::milliseconds(config_.heartbeat_timeout_ms)) return;
  std::vector<std::string> hung;
  for (const WorkerRecord* member : membership_.active_by_rank()) {
    if (!lost_reports_.count(member->id)) hung.push_back(member->id);
  }
  const size_t num_reports = lost_reports_.size();
  lost_reports_.clear();
  first_lost_report_.reset();
  if (hung.empty()) {
    // Every member lost it (a collective timed out everywhere): the same ranks rebuild.
    on_member_lost("every member of generation " + std::to_string(membership_.generation()) +
                       " reported it lost and none is gone",
                   now);
    return;
  }
  for (const std::string& id : hung) {
    on_worker_gone(id,
                   "hung: " + std::to_string(num_reports) +
                       " of its peers lost the generation and it neither reported so nor died "
                       "within the heartbeat timeout",
                   false);
  }
}

void Coordinator::on_member_lost(const std::string& what, Clock::time_point now) {
  keeper_.on_member_lost(membership_.generation(), what, now);
  if (auto outcome = eplb_.on_member_lost(what)) finish_rebalance(*outcome);
  apply(scale_->on_generation_broken(what, now));
}

void Coordinator::keep_fleet(Clock::time_point now) {
  const bool running = scale_->running();
  if (scale_seen_running_ && !running) {
    const protocol::ScaleInfo info = scale_->info(now);
    keeper_.on_scale_ended(info.state == "succeeded", scale_->kind() == ScaleKind::kRecover,
                           keeper_started_scale_, info.to_dp, membership_.generation(), info.reason,
                           now);
    keeper_started_scale_ = false;
  }
  scale_seen_running_ = running;
  if (shutting_down_) return;
  FleetView view;
  view.active_dp = static_cast<int>(membership_.active_by_rank().size());
  view.scale_running = running;
  const KeeperAction action = keeper_.next(view, now);
  if (action == KeeperAction::kNone) return;
  Result<std::vector<ScaleAction>> actions =
      action == KeeperAction::kRecover
          ? scale_->start_recovery(now)
          : scale_->start(keeper_.target(), launcher_->live_workers(), now);
  if (!actions.is_ok()) {
    if (action == KeeperAction::kRecover && actions.status().code() == ErrorCode::kUnavailable) {
      keeper_.on_nothing_to_recover(now);
      return;
    }
    const std::string refusal = std::string(to_string(action)) + " (dp " +
                                std::to_string(keeper_.target()) +
                                ") refused: " + actions.status().message();
    if (refusal != last_refusal_) EEP_LOG_WARN(refusal << "; trying again with backoff");
    last_refusal_ = refusal;
    keeper_.on_refused(refusal, now);
    return;
  }
  last_refusal_.clear();
  keeper_.on_started(action);
  if (action == KeeperAction::kScaleToTarget && view.active_dp > 0) {
    EEP_LOG_INFO("returning the fleet from dp " << view.active_dp << " to its target dp "
                                                << keeper_.target());
  }
  apply(actions.value());
  scale_seen_running_ = scale_->running();
  keeper_started_scale_ = scale_seen_running_;
}

}  // namespace eep::coordinator
