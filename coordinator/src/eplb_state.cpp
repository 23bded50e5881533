#include "eep/coordinator/eplb_state.h"

#include <algorithm>

#include "eep/common/check.h"

namespace eep::coordinator {

const char* to_string(EplbStage stage) {
  switch (stage) {
    case EplbStage::kMeasuring:
      return "measuring";
    case EplbStage::kPlanning:
      return "planning";
    case EplbStage::kMoving:
      return "moving";
  }
  return "?";
}

bool eplb_transition_allowed(EplbStage from, EplbStage to) {
  using S = EplbStage;
  struct Edge {
    S from, to;
  };
  // measuring -> planning       a check is due, or an operator forced one
  // planning  -> moving         the plan is sent
  // planning  -> measuring      not worth moving, or the planner failed
  // moving    -> measuring      every rank answered, or the deadline passed
  static constexpr Edge kEdges[] = {
      {S::kMeasuring, S::kPlanning},
      {S::kPlanning, S::kMoving},
      {S::kPlanning, S::kMeasuring},
      {S::kMoving, S::kMeasuring},
  };
  for (const Edge& edge : kEdges) {
    if (edge.from == from && edge.to == to) return true;
  }
  return false;
}

void EplbState::transition(EplbStage to) {
  EEP_CHECK_MSG(eplb_transition_allowed(stage_, to),
                "EPLB " << to_string(stage_) << " -> " << to_string(to));
  stage_ = to;
}

EplbState::EplbState(EplbOptions options) : options_(std::move(options)) {
  EEP_CHECK(options_.window_size > 0 && options_.step_interval > 0);
  EEP_CHECK(options_.layers_per_step > 0);
}

std::optional<uint64_t> EplbState::reset(int64_t generation, std::optional<Placement> placement) {
  EEP_CHECK(!placement || placement->validate().is_ok());
  std::optional<uint64_t> dropped;
  if (plan_) dropped = plan_->plan_id;
  generation_ = generation;
  placement_ = std::move(placement);
  plan_.reset();
  stage_ = EplbStage::kMeasuring;  // a plan being computed is dropped when its result comes
  answered_.clear();
  clear_window();
  return dropped;
}

void EplbState::clear_window() {
  windows_.assign(placement_ ? placement_->num_ranks : 0, RankWindow{});
  for (RankWindow& window : windows_) {
    window.sums.assign(placement_->num_layers,
                       std::vector<int64_t>(static_cast<size_t>(placement_->num_slots()), 0));
  }
  steps_since_check_ = 0;
  measured_valid_ = false;
}

Status EplbState::add_load(const protocol::ExpertLoad& report) {
  if (!placement_ || report.generation != generation_ || stage_ == EplbStage::kMoving) {
    return Status::ok();
  }
  const Placement& placement = *placement_;
  const std::string from = "expert load of rank " + std::to_string(report.rank) + " (generation " +
                           std::to_string(report.generation) + ")";
  if (report.rank < 0 || report.rank >= placement.num_ranks) {
    return error(ErrorCode::kInvalidArgument, from + ": rank out of range; the generation has " +
                                                  std::to_string(placement.num_ranks) + " ranks");
  }
  bool shape_ok = static_cast<int>(report.counts.size()) == placement.num_layers;
  for (size_t l = 0; shape_ok && l < report.counts.size(); ++l) {
    shape_ok = static_cast<int>(report.counts[l].size()) == placement.num_slots();
  }
  if (!shape_ok) {
    return error(ErrorCode::kInvalidArgument,
                 from + ": counts must be " + std::to_string(placement.num_layers) + " layers x " +
                     std::to_string(placement.num_slots()) +
                     " slots, the generation's placement; is the worker on another model?");
  }
  for (const auto& row : report.counts) {
    if (std::any_of(row.begin(), row.end(), [](int64_t count) { return count < 0; })) {
      return error(ErrorCode::kInvalidArgument, from + ": a negative token count");
    }
  }

  RankWindow& window = windows_[report.rank];
  window.reports.push_back(Report{report.num_steps, report.counts});
  window.num_steps += report.num_steps;
  for (size_t l = 0; l < report.counts.size(); ++l) {
    for (size_t s = 0; s < report.counts[l].size(); ++s) window.sums[l][s] += report.counts[l][s];
  }
  // Whole reports leave, oldest first, as long as the rest still covers window_size steps.
  while (window.reports.size() > 1 &&
         window.num_steps - window.reports.front().num_steps >= options_.window_size) {
    const Report& oldest = window.reports.front();
    window.num_steps -= oldest.num_steps;
    for (size_t l = 0; l < oldest.counts.size(); ++l) {
      for (size_t s = 0; s < oldest.counts[l].size(); ++s) window.sums[l][s] -= oldest.counts[l][s];
    }
    window.reports.pop_front();
  }
  if (report.rank == 0) steps_since_check_ += report.num_steps;
  measured_valid_ = false;
  return Status::ok();
}

uint64_t EplbState::window_steps() const {
  uint64_t steps = 0;
  for (const RankWindow& window : windows_) steps = std::max(steps, window.num_steps);
  return steps;
}

ExpertTokenCounts EplbState::logical_load() const {
  if (!placement_) return {};
  const Placement& placement = *placement_;
  ExpertTokenCounts load(placement.num_layers,
                         std::vector<int64_t>(placement.num_logical_experts, 0));
  for (const RankWindow& window : windows_) {
    for (int l = 0; l < placement.num_layers; ++l) {
      for (int s = 0; s < placement.num_slots(); ++s) {
        load[l][placement.logical_of(l, s)] += window.sums[l][s];
      }
    }
  }
  return load;
}

std::optional<Balancedness> EplbState::measured() const {
  if (!measured_valid_) {
    measured_.reset();
    if (placement_ && window_steps() > 0) {
      auto value = balancedness(logical_load(), *placement_);
      EEP_CHECK_MSG(value.is_ok(), value.status().to_string());  // shapes match by construction
      measured_ = std::move(value).value();
    }
    measured_valid_ = true;
  }
  return measured_;
}

PlanRequest EplbState::make_request(bool forced) {
  PlanRequest request;
  request.request_id = next_request_id_++;
  request.generation = generation_;
  request.load = logical_load();
  request.current = *placement_;
  request.config.num_ranks = placement_->num_ranks;
  request.config.slots_per_rank = placement_->slots_per_rank;
  request.config.num_threads = options_.planner_threads;
  request.migration = options_.migration;
  request.window_steps = window_steps();
  request.forced = forced;
  planning_request_id_ = request.request_id;
  steps_since_check_ = 0;
  transition(EplbStage::kPlanning);
  return request;
}

void EplbState::begin(PlannedRebalance& plan, Clock::time_point now) {
  plan.plan_id = next_plan_id_++;
  plan_ = plan;
  plan_started_ = now;
  answered_.clear();
  answers_ = RebalanceOutcome{};
  steps_since_check_ = 0;
  transition(EplbStage::kMoving);
}

std::optional<PlanRequest> EplbState::due_plan(Clock::time_point /*now*/) {
  if (!options_.enabled || !placement_ || in_progress() || window_steps() == 0 ||
      steps_since_check_ < options_.step_interval) {
    return std::nullopt;
  }
  return make_request(false);
}

Result<PlanRequest> EplbState::force_plan(Clock::time_point /*now*/) {
  if (!placement_) {
    return error(ErrorCode::kFailedPrecondition,
                 "no expert placement is known: start the coordinator with --model and wait for "
                 "the fleet to form");
  }
  if (stage_ == EplbStage::kPlanning) {
    return error(ErrorCode::kFailedPrecondition,
                 "a rebalance is being planned; wait for it (eepctl status)");
  }
  if (plan_) {
    return error(ErrorCode::kFailedPrecondition,
                 "rebalance " + std::to_string(plan_->plan_id) +
                     " is in progress; wait for it to finish (eepctl status)");
  }
  if (window_steps() == 0) {
    return error(ErrorCode::kFailedPrecondition,
                 "no expert load reported yet in generation " + std::to_string(generation_) +
                     "; the workers report it while they serve requests, try again under load");
  }
  return make_request(true);
}

Result<std::optional<PlanDecision>> EplbState::on_planned(PlanResult result,
                                                          Clock::time_point now) {
  if (stage_ != EplbStage::kPlanning || result.request_id != planning_request_id_ ||
      result.generation != generation_) {
    return std::optional<PlanDecision>{};
  }
  steps_since_check_ = 0;
  if (!result.plan.is_ok()) {
    transition(EplbStage::kMeasuring);
    return result.plan.status();
  }
  const MigrationPlan& migration = result.plan.value();
  PlanDecision decision;
  PlannedRebalance& plan = decision.plan;
  plan.generation = result.generation;
  plan.placement = migration.placement;
  plan.current_balancedness = migration.current_balancedness;
  plan.predicted_balancedness = migration.predicted_balancedness;
  plan.scratch_balancedness = migration.scratch_balancedness;
  plan.window_steps = result.window_steps;
  plan.slots_changed = migration.slots_changed;
  plan.num_slots =
      static_cast<int64_t>(migration.placement.num_layers) * migration.placement.num_slots();
  plan.plan_seconds = result.seconds;
  plan.forced = result.forced;
  decision.send = result.forced || (plan.slots_changed > 0 &&
                                    plan.predicted_balancedness >
                                        plan.current_balancedness + options_.min_improvement);
  if (decision.send) {
    begin(plan, now);
  } else {
    transition(EplbStage::kMeasuring);
  }
  return std::optional<PlanDecision>{std::move(decision)};
}

void EplbState::drop_planning() {
  if (stage_ != EplbStage::kPlanning) return;
  steps_since_check_ = 0;
  transition(EplbStage::kMeasuring);
}

std::optional<RebalanceOutcome> EplbState::on_done(const protocol::RebalanceDone& done) {
  if (!plan_ || done.generation != generation_ || done.plan_id != plan_->plan_id) {
    return std::nullopt;
  }
  if (done.rank < 0 || done.rank >= placement_->num_ranks || !answered_.insert(done.rank).second) {
    return std::nullopt;
  }
  answers_.bytes_moved += done.bytes_moved;
  answers_.seconds = std::max(answers_.seconds, done.seconds);
  answers_.move_seconds = std::max(answers_.move_seconds, done.move_seconds);
  answers_.longest_step_gap_ms = std::max(answers_.longest_step_gap_ms, done.longest_step_gap_ms);
  if (!done.error.empty() && answers_.status.is_ok()) {
    answers_.status = error(ErrorCode::kInternal, "rank " + std::to_string(done.rank) +
                                                      " could not move its experts: " + done.error);
  }
  if (static_cast<int>(answered_.size()) < placement_->num_ranks) return std::nullopt;
  return finish(answers_.status);
}

std::optional<RebalanceOutcome> EplbState::on_tick(Clock::time_point now) {
  if (!plan_ || now - plan_started_ < options_.rebalance_timeout) return std::nullopt;
  std::string missing;
  for (int rank = 0; rank < placement_->num_ranks; ++rank) {
    if (!answered_.count(rank)) missing += (missing.empty() ? "" : ", ") + std::to_string(rank);
  }
  return finish(error(ErrorCode::kDeadlineExceeded,
                      "no RebalanceDone from rank(s) " + missing + " within " +
                          std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                             options_.rebalance_timeout)
                                             .count()) +
                          " s; the coordinator keeps the old placement"));
}

std::optional<RebalanceOutcome> EplbState::on_member_lost(const std::string& what) {
  if (!plan_) return std::nullopt;
  return finish(error(ErrorCode::kUnavailable,
                      "a member was lost while experts moved (" + what +
                          "); the coordinator keeps the old placement, and the recovery reads "
                          "from the checkpoint what the survivors moved"));
}

RebalanceOutcome EplbState::finish(Status status) {
  RebalanceOutcome outcome = answers_;
  outcome.plan = std::move(*plan_);
  outcome.status = std::move(status);
  plan_.reset();
  transition(EplbStage::kMeasuring);
  answered_.clear();
  if (outcome.status.is_ok()) {
    placement_ = outcome.plan.placement;
    clear_window();  // the old counts are per slot of the old placement
  }
  steps_since_check_ = 0;

  protocol::EplbRebalanceInfo last;
  last.plan_id = outcome.plan.plan_id;
  last.generation = outcome.plan.generation;
  last.ok = outcome.status.is_ok();
  if (!last.ok) last.error = outcome.status.message();
  last.before_balancedness = outcome.plan.current_balancedness;
  last.after_balancedness = outcome.plan.predicted_balancedness;
  last.bytes_moved = outcome.bytes_moved;
  last.seconds = outcome.seconds;
  last.move_seconds = outcome.move_seconds;
  last.longest_step_gap_ms = outcome.longest_step_gap_ms;
  last_ = last;
  return outcome;
}

protocol::EplbInfo EplbState::info() const {
  protocol::EplbInfo info;
  info.enabled = options_.enabled;
  info.window_steps = window_steps();
  if (auto value = measured()) {
    info.balancedness = value->mean;
    info.per_layer = value->per_layer;
  }
  if (plan_) info.in_progress = plan_->plan_id;
  info.last_rebalance = last_;
  return info;
}

}  // namespace eep::coordinator
