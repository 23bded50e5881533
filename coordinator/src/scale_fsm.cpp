#include "eep/coordinator/scale_fsm.h"

#include <algorithm>

#include "eep/common/log.h"
#include "eep/coordinator/topology.h"

namespace eep::coordinator {
namespace {

using protocol::WorkerState;

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

}  // namespace

std::string_view to_string(ScaleStage stage) {
  switch (stage) {
    case ScaleStage::kIdle:
      return "IDLE";
    case ScaleStage::kWaitWorkers:
      return "WAIT_WORKERS";
    case ScaleStage::kWaitAcks:
      return "WAIT_ACKS";
    case ScaleStage::kDrainLeaving:
      return "DRAIN_LEAVING";
    case ScaleStage::kRetireLeaving:
      return "RETIRE_LEAVING";
    case ScaleStage::kSucceeded:
      return "SUCCEEDED";
    case ScaleStage::kFailed:
      return "FAILED";
  }
  return "UNKNOWN";
}

std::string_view to_string(ScaleKind kind) {
  return kind == ScaleKind::kRecover ? "recover" : "scale";
}

ScaleFsm::ScaleFsm(Membership& membership, PortAllocator& ports, ScaleLimits limits)
    : membership_(membership), ports_(ports), limits_(std::move(limits)) {}

bool ScaleFsm::running() const {
  return stage_ == ScaleStage::kWaitWorkers || stage_ == ScaleStage::kWaitAcks ||
         stage_ == ScaleStage::kDrainLeaving || stage_ == ScaleStage::kRetireLeaving;
}

std::vector<std::string> ScaleFsm::draining() const {
  return running() ? leaving_ : std::vector<std::string>{};
}

void ScaleFsm::enter(ScaleStage stage, Clock::time_point now) {
  now = std::max(now, stage_started_);  // a caller's older clock read never gives a negative stage
  if (running()) timeline_.push_back(StageTiming{stage_, seconds_between(stage_started_, now)});
  EEP_LOG_INFO(to_string(kind_) << " " << from_dp_ << "->" << to_dp_ << " (generation "
                                << target_generation_ << "): " << to_string(stage_) << " -> "
                                << to_string(stage) << " after "
                                << seconds_between(stage_started_, now) << " s");
  stage_ = stage;
  stage_started_ = now;
  if (!running()) {
    finished_ = now;
    recent_.push_back(info(now));
    if (recent_.size() > kNumRecent) recent_.pop_front();
  }
}

std::string ScaleFsm::free_worker_id(const std::vector<std::string>& launcher_live,
                                     const std::set<std::string>& taken, int* index) const {
  for (int n = 0;; ++n) {
    std::string id = "w" + std::to_string(n);
    const WorkerRecord* known = membership_.find(id);
    const bool alive = known != nullptr && known->state != WorkerState::kDead;
    if (alive || taken.count(id) ||
        std::find(launcher_live.begin(), launcher_live.end(), id) != launcher_live.end()) {
      continue;
    }
    *index = n;
    return id;
  }
}

Result<std::vector<ScaleAction>> ScaleFsm::start(int to_dp,
                                                 const std::vector<std::string>& launcher_live,
                                                 Clock::time_point now) {
  return begin(ScaleKind::kScale, to_dp, launcher_live, now);
}

Result<std::vector<ScaleAction>> ScaleFsm::start_recovery(Clock::time_point now) {
  const int num_survivors = static_cast<int>(membership_.active_by_rank().size());
  const int num_spares = static_cast<int>(membership_.in_state(WorkerState::kSpare).size());
  if (num_survivors + num_spares == 0) {
    return error(ErrorCode::kUnavailable,
                 "generation " + std::to_string(membership_.generation()) +
                     " has no surviving member and no spare is registered");
  }
  return begin(ScaleKind::kRecover, num_survivors + num_spares, {}, now);
}

bool ScaleFsm::current_generation_intact() const {
  return !current_broken_ &&
         std::all_of(current_members_.begin(), current_members_.end(), [&](const std::string& id) {
           const WorkerRecord* worker = membership_.find(id);
           return worker != nullptr && worker->state == WorkerState::kActive;
         });
}

Result<std::vector<ScaleAction>> ScaleFsm::begin(ScaleKind kind, int to_dp,
                                                 const std::vector<std::string>& launcher_live,
                                                 Clock::time_point now) {
  if (running()) {
    return error(ErrorCode::kFailedPrecondition,
                 "a scale " + std::to_string(from_dp_) + "->" + std::to_string(to_dp_) +
                     " is already running (stage " + std::string(to_string(stage_)) +
                     "); wait for it to finish");
  }
  if (to_dp < 1) {
    return error(ErrorCode::kInvalidArgument, "dp must be at least 1, got " +
                                                  std::to_string(to_dp) +
                                                  "; use the shutdown command to stop the fleet");
  }
  const std::vector<const WorkerRecord*> active = membership_.active_by_rank();
  const int from_dp = static_cast<int>(active.size());
  if (to_dp == from_dp && kind == ScaleKind::kScale) return std::vector<ScaleAction>{};

  // Whether the workers exist or can be launched, before any work that grows with to_dp (the
  // placement below): `scale --dp 1000000000` is refused at once, not after gigabytes.
  // Spares in the order that keeps each host's ranks consecutive (docs/hosts.md).
  std::vector<std::string> staying_hosts;
  for (int rank = 0; rank < std::min(from_dp, to_dp); ++rank) {
    staying_hosts.push_back(active[rank]->host);
  }
  std::vector<const WorkerRecord*> spares =
      spares_in_host_order(staying_hosts, membership_.in_state(WorkerState::kSpare));
  const int num_new = std::max(0, to_dp - from_dp);
  const int num_spares_used = std::min<int>(num_new, static_cast<int>(spares.size()));
  const int num_launch = num_new - num_spares_used;
  if (num_launch > 0) {
    if (!limits_.can_launch) {
      return error(ErrorCode::kResourceExhausted,
                   "dp " + std::to_string(to_dp) + " needs " + std::to_string(num_new) +
                       " more workers but only " + std::to_string(spares.size()) +
                       " spares are registered and the launcher cannot start workers");
    }
    const int num_alive = static_cast<int>(launcher_live.size());
    if (num_alive + num_launch > limits_.max_workers) {
      return error(ErrorCode::kResourceExhausted,
                   "dp " + std::to_string(to_dp) + " needs " + std::to_string(num_launch) +
                       " new workers but the launcher runs " + std::to_string(num_alive) +
                       " of at most " + std::to_string(limits_.max_workers) + " (--max-workers)");
    }
  }

  std::optional<Placement> placement;
  if (limits_.experts) {
    auto initial = limits_.experts->initial_placement(to_dp);
    if (!initial.is_ok()) return initial.status();
    placement = std::move(initial).value();
  }

  // Rank 0 of g+1 serves the generation's stores: the current rank 0, else the first new worker.
  std::string store_host = limits_.local_host;
  if (!active.empty()) {
    store_host = active.front()->host;
  } else if (num_spares_used > 0) {
    store_host = spares.front()->host;
  }
  // Never a number a rolled-back scale used: its workers may still be tearing that generation
  // down (groups, stores) when the next one starts.
  const int64_t target_generation = std::max(membership_.generation(), target_generation_) + 1;
  auto control_port = ports_.allocate(store_host, target_generation);
  if (!control_port.is_ok()) return control_port.status();
  auto ep_port = ports_.allocate(store_host, target_generation);
  if (!ep_port.is_ok()) {
    ports_.release_generation(target_generation);
    return ep_port.status();
  }

  // Accepted: from here on nothing can fail synchronously.
  from_dp_ = from_dp;
  to_dp_ = to_dp;
  target_generation_ = target_generation;
  failure_reason_.clear();
  timeline_.clear();
  weight_bytes_from_peers_ = 0;
  weight_bytes_from_checkpoint_ = 0;
  weight_transfer_s_ = 0;
  build_stages_.clear();
  started_ = now;
  stage_started_ = now;
  kind_ = kind;
  members_.clear();
  leaving_.clear();
  picked_spares_.clear();
  launched_.clear();
  awaiting_.clear();
  control_store_ = {store_host, control_port.value()};
  ep_store_ = {store_host, ep_port.value()};
  placement_ = std::move(placement);

  for (int rank = 0; rank < std::min(from_dp, to_dp); ++rank) members_.push_back(active[rank]->id);
  for (int rank = to_dp; rank < from_dp; ++rank) leaving_.push_back(active[rank]->id);

  std::vector<ScaleAction> actions;
  std::set<std::string> taken;
  for (int i = 0; i < num_spares_used; ++i) {
    const std::string& id = spares[i]->id;
    EEP_CHECK(membership_.transition(id, WorkerState::kJoining, "", now).is_ok());
    picked_spares_.insert(id);
    members_.push_back(id);
  }
  if (kind == ScaleKind::kRecover) {
    // Every member of a recovery reads its weights anew, so the ranks may be renumbered: each
    // host's ranks consecutive again after a loss in the middle.
    std::vector<std::string> member_hosts;
    for (const std::string& id : members_) member_hosts.push_back(membership_.find(id)->host);
    std::vector<std::string> grouped;
    for (size_t idx : group_by_host(member_hosts)) grouped.push_back(members_[idx]);
    members_ = std::move(grouped);
  }
  for (int i = 0; i < num_launch; ++i) {
    int index = 0;
    std::string id = free_worker_id(launcher_live, taken, &index);
    taken.insert(id);
    launched_.insert(id);
    awaiting_.insert(id);
    members_.push_back(id);
    actions.push_back(LaunchWorker{id, index});
  }
  EEP_LOG_INFO(to_string(kind) << " " << from_dp << "->" << to_dp << " accepted: generation "
                               << target_generation << ", " << num_spares_used << " spares, "
                               << num_launch << " to launch, " << leaving_.size()
                               << " leaving; stores on " << store_host << ":" << control_store_.port
                               << "," << ep_store_.port);
  stage_ = ScaleStage::kIdle;  // so that enter() records no stage before the first
  enter(ScaleStage::kWaitWorkers, now);
  if (awaiting_.empty()) {
    auto more = send_assignments(now);
    actions.insert(actions.end(), more.begin(), more.end());
  }
  return actions;
}

protocol::Assign ScaleFsm::assignment_for(int rank, int64_t generation,
                                          const std::vector<std::string>& members,
                                          const protocol::StoreEndpoint& control,
                                          const protocol::StoreEndpoint& ep,
                                          const std::optional<Placement>& placement) const {
  protocol::Assign assign;
  assign.generation = generation;
  assign.rank = rank;
  assign.world_size = static_cast<int>(members.size());
  assign.members = members;
  assign.control_store = control;
  assign.ep_store = ep;
  assign.placement = placement;
  return assign;
}

std::vector<ScaleAction> ScaleFsm::send_assignments(Clock::time_point now) {
  std::vector<ScaleAction> actions;
  for (size_t rank = 0; rank < members_.size(); ++rank) {
    awaiting_.insert(members_[rank]);
    protocol::Assign assign = assignment_for(static_cast<int>(rank), target_generation_, members_,
                                             control_store_, ep_store_, placement_);
    assign.recovery = kind_ == ScaleKind::kRecover;
    // The ranks of g that stay hand their weights to g+1 (docs/weight_transfer.md); in a
    // recovery the survivors hand over what they kept, and the lost members, not in g+1, send
    // nothing (docs/fault_tolerance.md).
    if (limits_.weights_from_peers && (assign.recovery || current_generation_intact())) {
      assign.previous_members = current_members_;
      assign.previous_placement = current_placement_;
    }
    actions.push_back(SendAssign{members_[rank], std::move(assign)});
  }
  // A scale-down: the leaving ranks send the weights only they hold (rank -1: not a member).
  const bool handover =
      limits_.weights_from_peers && kind_ == ScaleKind::kScale && current_generation_intact();
  for (const std::string& id : handover ? leaving_ : std::vector<std::string>{}) {
    protocol::Assign handover =
        assignment_for(-1, target_generation_, members_, control_store_, ep_store_, placement_);
    handover.previous_members = current_members_;
    handover.previous_placement = current_placement_;
    actions.push_back(SendAssign{id, std::move(handover)});
  }
  enter(ScaleStage::kWaitAcks, now);
  return actions;
}

std::vector<ScaleAction> ScaleFsm::on_registered(const std::string& worker_id,
                                                 Clock::time_point now) {
  if (stage_ != ScaleStage::kWaitWorkers || !launched_.count(worker_id)) return {};
  if (!awaiting_.erase(worker_id)) return {};
  EEP_CHECK(membership_.transition(worker_id, WorkerState::kJoining, "", now).is_ok());
  if (!awaiting_.empty()) return {};
  return send_assignments(now);
}

std::vector<ScaleAction> ScaleFsm::on_assign_ack(const std::string& worker_id, int64_t generation,
                                                 Clock::time_point now) {
  if (stage_ != ScaleStage::kWaitAcks || generation != target_generation_) return {};
  if (!awaiting_.erase(worker_id) || !awaiting_.empty()) return {};
  return end_acks(now);
}

void ScaleFsm::record_build_report(const protocol::AssignAck& ack) {
  if (stage_ != ScaleStage::kWaitAcks || ack.generation != target_generation_) return;
  weight_bytes_from_peers_ += ack.weight_bytes_from_peers;
  weight_bytes_from_checkpoint_ += ack.weight_bytes_from_checkpoint;
  weight_transfer_s_ = std::max(weight_transfer_s_, ack.weight_transfer_s);
  for (const protocol::StageDuration& stage : ack.build_stages) {
    auto it =
        std::find_if(build_stages_.begin(), build_stages_.end(),
                     [&](const protocol::StageDuration& s) { return s.stage == stage.stage; });
    if (it == build_stages_.end()) {
      build_stages_.push_back(stage);
    } else {
      it->seconds = std::max(it->seconds, stage.seconds);
    }
  }
}

std::vector<ScaleAction> ScaleFsm::end_acks(Clock::time_point now) {
  if (leaving_.empty()) return switch_generation(now);
  // A scale-down: the router has given the leaving ranks no new request since the scale was
  // accepted; those still running there get until the drain deadline (the caller reports when
  // none is left: on_leaving_drained).
  enter(ScaleStage::kDrainLeaving, now);
  if (limits_.drain_timeout.count() == 0) {
    EEP_LOG_INFO("scale " << from_dp_ << "->" << to_dp_
                          << ": no drain (--scale-drain-timeout-ms 0); what still runs on the "
                             "leaving ranks migrates");
    return switch_generation(now);
  }
  return {};
}

std::vector<ScaleAction> ScaleFsm::on_leaving_drained(Clock::time_point now) {
  if (stage_ != ScaleStage::kDrainLeaving) return {};
  EEP_LOG_INFO("scale " << from_dp_ << "->" << to_dp_ << ": no request runs on the "
                        << leaving_.size() << " leaving ranks any more");
  return switch_generation(now);
}

std::vector<ScaleAction> ScaleFsm::switch_generation(Clock::time_point now) {
  std::vector<ScaleAction> actions;
  // Leaving workers that died meanwhile are DEAD already (and their requests moved elsewhere).
  std::vector<std::string> retiring;
  for (const std::string& id : leaving_) {
    const WorkerRecord* worker = membership_.find(id);
    if (worker == nullptr || worker->state != WorkerState::kActive) continue;
    EEP_CHECK(membership_
                  .transition(id, WorkerState::kLeaving,
                              "retired by scale to dp " + std::to_string(to_dp_), now)
                  .is_ok());
    retiring.push_back(id);
  }
  const int64_t old_generation = membership_.generation();
  Status committed = membership_.commit_generation(target_generation_, members_, now);
  EEP_CHECK_MSG(committed.is_ok(), committed.to_string());
  ports_.release_generation(old_generation);
  current_members_ = members_;
  current_broken_ = false;
  current_control_store_ = control_store_;
  current_ep_store_ = ep_store_;
  current_placement_ = placement_;
  EEP_LOG_INFO("generation " << target_generation_ << " is live with " << members_.size()
                             << " ranks");
  // What still runs on the leaving ranks (the drain deadline passed) continues on the members,
  // now: the router holds each request's prompt and every token it relayed, and takes no output
  // of it from the leaving worker any more, so the tokens that worker still sends (it steps until
  // the switch step, where it retires before running a forward) are neither relayed twice nor
  // missing: the member computes them again from the same prefix.
  for (const std::string& id : retiring) {
    actions.push_back(MigrateRequests{id, "retired by scale to dp " + std::to_string(to_dp_)});
  }
  // Every member switches to the new generation, every leaving rank retires, at the first step
  // at which all ranks of the old one hold this order; new ranks start stepping on it.
  for (const std::string& id : members_) {
    actions.push_back(SendSwitch{id, protocol::Switch{target_generation_, false}});
  }
  // Leaving workers are told, not stopped: a serving one still takes part in the lockstep step
  // where everybody switches, and exits right after it. One that never goes is killed at the
  // stage's deadline.
  for (const std::string& id : retiring) {
    awaiting_.insert(id);
    actions.push_back(SendSwitch{id, protocol::Switch{target_generation_, true}});
    actions.push_back(SendShutdown{id, "retired by scale to dp " + std::to_string(to_dp_)});
  }
  enter(ScaleStage::kRetireLeaving, now);
  if (awaiting_.empty()) enter(ScaleStage::kSucceeded, now);
  return actions;
}

std::vector<ScaleAction> ScaleFsm::on_worker_gone(const std::string& worker_id,
                                                  const std::string& reason,
                                                  Clock::time_point now) {
  if (!running()) return {};
  if (stage_ == ScaleStage::kRetireLeaving) {
    if (std::find(members_.begin(), members_.end(), worker_id) != members_.end()) {
      // A member of the new, live generation: the scale stands and the fleet recovers. The
      // leaving workers still awaited are told to go by signal (their groups are broken too).
      std::vector<ScaleAction> actions;
      for (const std::string& id : awaiting_) actions.push_back(StopWorker{id, false});
      awaiting_.clear();
      enter(ScaleStage::kSucceeded, now);
      return actions;
    }
    if (awaiting_.erase(worker_id) && awaiting_.empty()) enter(ScaleStage::kSucceeded, now);
    return {};
  }
  // A member of g+1, or a leaving rank of g (it hands over weights, it serves g until the
  // switch): g+1 cannot be built without it.
  const bool involved = std::find(members_.begin(), members_.end(), worker_id) != members_.end() ||
                        std::find(leaving_.begin(), leaving_.end(), worker_id) != leaving_.end();
  if (!involved) return {};
  return roll_back(
      "worker " + worker_id + " was lost during " + std::string(to_string(stage_)) + ": " + reason,
      now);
}

std::vector<ScaleAction> ScaleFsm::on_generation_broken(const std::string& reason,
                                                        Clock::time_point now) {
  current_broken_ = true;
  if (!running() || stage_ == ScaleStage::kRetireLeaving) return {};
  return roll_back("generation " + std::to_string(membership_.generation()) + " broke: " + reason,
                   now);
}

std::vector<ScaleAction> ScaleFsm::on_assign_failed(const std::string& worker_id,
                                                    int64_t generation, const std::string& reason,
                                                    Clock::time_point now) {
  const bool leaving = std::find(leaving_.begin(), leaving_.end(), worker_id) != leaving_.end();
  if (stage_ != ScaleStage::kWaitAcks || generation != target_generation_ ||
      (!awaiting_.count(worker_id) && !leaving)) {
    return {};
  }
  // A leaving rank that cannot hand over its weights: the staying ranks would wait for it.
  return roll_back("worker " + worker_id +
                       (leaving ? " cannot hand over its weights to" : " cannot join") +
                       " generation " + std::to_string(generation) + ": " + reason,
                   now);
}

std::vector<ScaleAction> ScaleFsm::on_tick(Clock::time_point now) {
  if (stage_ == ScaleStage::kDrainLeaving) {
    if (now - stage_started_ < limits_.drain_timeout) return {};
    EEP_LOG_INFO("scale " << from_dp_ << "->" << to_dp_ << ": the drain deadline of "
                          << limits_.drain_timeout.count()
                          << " ms passed; what still runs on the leaving ranks migrates");
    return switch_generation(now);
  }
  if (!running() || now - stage_started_ < limits_.stage_timeout) return {};
  if (stage_ == ScaleStage::kRetireLeaving) {
    // g+1 already serves; a leaving worker that will not go is killed, the scale stands.
    std::vector<ScaleAction> actions;
    for (const std::string& id : awaiting_) {
      EEP_LOG_WARN("leaving worker " << id << " did not exit in time; killing it");
      actions.push_back(StopWorker{id, true});
    }
    awaiting_.clear();
    enter(ScaleStage::kSucceeded, now);
    return actions;
  }
  std::string waiting_for;
  for (const std::string& id : awaiting_) waiting_for += (waiting_for.empty() ? "" : ", ") + id;
  return roll_back(std::string(to_string(stage_)) + " passed its deadline of " +
                       std::to_string(limits_.stage_timeout.count()) + " ms waiting for " +
                       waiting_for,
                   now);
}

std::vector<ScaleAction> ScaleFsm::roll_back(const std::string& reason, Clock::time_point now) {
  EEP_LOG_ERROR(to_string(kind_) << " " << from_dp_ << "->" << to_dp_
                                 << " failed, rolling back to generation "
                                 << membership_.generation() << ": " << reason);
  std::vector<ScaleAction> actions;
  for (const std::string& id : members_) {
    const WorkerRecord* worker = membership_.find(id);
    if (worker == nullptr || worker->state == WorkerState::kDead) continue;
    if (launched_.count(id)) {
      // Launched for this scale: it goes away again.
      if (worker->state != WorkerState::kLeaving) {
        EEP_CHECK(
            membership_.transition(id, WorkerState::kLeaving, "scale rolled back", now).is_ok());
      }
      actions.push_back(SendShutdown{id, "scale rolled back: " + reason});
      actions.push_back(StopWorker{id, false});
    } else if (picked_spares_.count(id) && worker->state == WorkerState::kJoining) {
      EEP_CHECK(membership_.transition(id, WorkerState::kSpare, "", now).is_ok());
    }
  }
  // Launched workers that never registered: the launcher stops them.
  for (const std::string& id : launched_) {
    if (membership_.find(id) == nullptr) actions.push_back(StopWorker{id, true});
  }
  // Members of g that were told about g+1 are told g again; unless g lost a member (the fleet
  // recovers next) or this was a recovery (g is broken).
  const bool back_to_current = kind_ == ScaleKind::kScale && current_generation_intact();
  for (size_t rank = 0; back_to_current && rank < current_members_.size(); ++rank) {
    const WorkerRecord* worker = membership_.find(current_members_[rank]);
    if (worker == nullptr || worker->state != WorkerState::kActive) continue;
    actions.push_back(SendAssign{
        current_members_[rank],
        assignment_for(static_cast<int>(rank), membership_.generation(), current_members_,
                       current_control_store_, current_ep_store_, current_placement_)});
  }
  ports_.release_generation(target_generation_);
  failure_reason_ = reason;
  awaiting_.clear();
  enter(ScaleStage::kFailed, now);
  return actions;
}

std::optional<protocol::Assign> ScaleFsm::current_assignment(const std::string& worker_id) const {
  for (size_t rank = 0; rank < current_members_.size(); ++rank) {
    if (current_members_[rank] == worker_id) {
      return assignment_for(static_cast<int>(rank), membership_.generation(), current_members_,
                            current_control_store_, current_ep_store_, current_placement_);
    }
  }
  return std::nullopt;
}

void ScaleFsm::set_current_placement(Placement placement) {
  EEP_CHECK(current_placement_.has_value());
  EEP_CHECK(placement.num_ranks == current_placement_->num_ranks &&
            placement.slots_per_rank == current_placement_->slots_per_rank &&
            placement.num_layers == current_placement_->num_layers);
  current_placement_ = std::move(placement);
}

protocol::ScaleInfo ScaleFsm::info(Clock::time_point now) const {
  protocol::ScaleInfo info;
  info.kind = std::string(to_string(kind_));
  switch (stage_) {
    case ScaleStage::kIdle:
      info.state = "idle";
      break;
    case ScaleStage::kSucceeded:
      info.state = "succeeded";
      break;
    case ScaleStage::kFailed:
      info.state = "failed";
      break;
    default:
      info.state = "running";
      break;
  }
  info.stage = std::string(to_string(stage_));
  info.from_dp = from_dp_;
  info.to_dp = to_dp_;
  info.target_generation = target_generation_;
  info.reason = failure_reason_;
  if (stage_ != ScaleStage::kIdle) {
    info.elapsed_s = seconds_between(started_, running() ? now : finished_);
  }
  for (const StageTiming& timing : timeline_) {
    info.timeline.push_back({std::string(to_string(timing.stage)), timing.seconds});
  }
  info.weight_bytes_from_peers = weight_bytes_from_peers_;
  info.weight_bytes_from_checkpoint = weight_bytes_from_checkpoint_;
  info.weight_transfer_s = weight_transfer_s_;
  info.build_stages = build_stages_;
  return info;
}

}  // namespace eep::coordinator
