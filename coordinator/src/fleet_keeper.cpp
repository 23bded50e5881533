#include "eep/coordinator/fleet_keeper.h"

#include <algorithm>

#include "eep/common/log.h"

namespace eep::coordinator {
namespace {

double seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

std::string_view to_string(KeeperAction action) {
  switch (action) {
    case KeeperAction::kNone:
      return "none";
    case KeeperAction::kRecover:
      return "recover";
    case KeeperAction::kScaleToTarget:
      return "scale to target";
  }
  return "unknown";
}

void FleetKeeper::set_target(int dp) {
  target_dp_ = dp;
  gave_up_.clear();
  failures_.clear();
  backoff_ = std::chrono::milliseconds(0);
  retry_at_.reset();
}

void FleetKeeper::on_member_lost(int64_t generation, const std::string& reason,
                                 Clock::time_point now) {
  ++num_failures_;
  last_failure_ = reason;
  last_failure_at_ = now;
  if (!broken_generation_ || *broken_generation_ < generation) {
    broken_generation_ = generation;
    broken_since_ = now;
  }
  // A recovery does not wait for the backoff of earlier failed scales: serving waits on it.
  retry_at_.reset();
}

void FleetKeeper::on_nothing_to_recover(Clock::time_point now) {
  EEP_LOG_ERROR("generation " << broken_generation_.value_or(-1)
                              << " has no survivor and no spare waits: the fleet forms anew at dp "
                              << target_dp_ << " from the checkpoint");
  broken_generation_.reset();
  retry_at_.reset();
  (void)now;
}

void FleetKeeper::on_started(KeeperAction action) {
  // The initial formation is no restart.
  if (action == KeeperAction::kScaleToTarget && formed_) ++num_restarts_;
  if (action == KeeperAction::kRecover) failures_at_recovery_start_ = num_failures_;
}

void FleetKeeper::on_refused(const std::string& reason, Clock::time_point now) {
  last_failure_ = reason;
  last_failure_at_ = now;
  backoff_ = std::clamp(backoff_ * 2, options_.first_backoff, options_.max_backoff);
  retry_at_ = now + backoff_;
}

void FleetKeeper::count_failure(const std::string& reason, Clock::time_point now) {
  last_failure_ = reason;
  last_failure_at_ = now;
  failures_.push_back(now);
  while (!failures_.empty() && now - failures_.front() > options_.restart_window) {
    failures_.pop_front();
  }
  if (static_cast<int>(failures_.size()) >= options_.max_restarts) {
    gave_up_ = std::to_string(failures_.size()) + " scales toward dp " +
               std::to_string(target_dp_) + " failed within " +
               std::to_string(options_.restart_window.count() / 1000) +
               " s (--max-restarts); the last: " + reason +
               ". Serving at the size the fleet has; a scale command tries again";
    EEP_LOG_ERROR("giving up: " << gave_up_);
  }
  backoff_ = std::clamp(backoff_ * 2, options_.first_backoff, options_.max_backoff);
  retry_at_ = now + backoff_;
}

void FleetKeeper::on_scale_ended(bool succeeded, bool recovery, bool ours, int to_dp,
                                 int64_t live_generation, const std::string& reason,
                                 Clock::time_point now) {
  if (succeeded) formed_ = true;
  const bool healed = broken_generation_ && live_generation > *broken_generation_;
  if (healed) {
    if (recovery) ++num_recoveries_;
    last_recovery_s_ = seconds(now - broken_since_);
    EEP_LOG_INFO("recovered: generation " << live_generation << " serves " << last_recovery_s_
                                          << " s after generation " << *broken_generation_
                                          << " lost a member");
    broken_generation_.reset();
  }
  if (succeeded) {
    if (recovery) {
      backoff_ = std::chrono::milliseconds(0);
      retry_at_.reset();
    } else {
      set_target(to_dp);
    }
    return;
  }
  // A recovery undone by another loss while it ran (a member it counted on died too, seen after
  // the settle) failed for no fault of its own: the next one, around every loss, starts at once,
  // without backoff and without counting against --max-restarts.
  if (recovery && broken_generation_ && num_failures_ > failures_at_recovery_start_) {
    EEP_LOG_WARN("the recovery was undone by another loss while it ran ("
                 << reason << "); recovering again around every loss, at once");
    return;
  }
  if (ours || recovery) count_failure(reason, now);
}

KeeperAction FleetKeeper::next(const FleetView& view, Clock::time_point now) const {
  if (view.scale_running) return KeeperAction::kNone;
  if (retry_at_ && now < *retry_at_) return KeeperAction::kNone;
  // A broken generation is recovered even after a give-up: without it nothing serves.
  if (broken_generation_) {
    return now - broken_since_ < options_.recovery_settle ? KeeperAction::kNone
                                                          : KeeperAction::kRecover;
  }
  if (!gave_up_.empty() || target_dp_ < 1) return KeeperAction::kNone;
  if (view.active_dp != target_dp_) return KeeperAction::kScaleToTarget;
  return KeeperAction::kNone;
}

protocol::FleetHealth FleetKeeper::health(Clock::time_point now) const {
  protocol::FleetHealth health;
  health.target_dp = target_dp_;
  health.num_failures = num_failures_;
  health.num_recoveries = num_recoveries_;
  health.num_restarts = num_restarts_;
  health.last_failure = last_failure_;
  health.last_failure_ago_s = last_failure_at_ ? seconds(now - *last_failure_at_) : -1;
  health.last_recovery_s = last_recovery_s_;
  health.gave_up = gave_up_;
  return health;
}

}  // namespace eep::coordinator
