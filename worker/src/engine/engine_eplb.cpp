// EngineCore's EPLB steps (DESIGN.md section 8, engine_core.h's header comment): plans held
// until every rank holds them, layers moved between steps, load reports.
#include <algorithm>

#include "eep/common/log.h"
#include "eep/worker/engine/engine_core.h"

namespace eep::worker {
namespace {

double milliseconds_between(std::chrono::steady_clock::time_point from,
                            std::chrono::steady_clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

std::string shape_of(const Placement& placement) {
  return std::to_string(placement.num_ranks) + " ranks x " +
         std::to_string(placement.slots_per_rank) + " slots, " +
         std::to_string(placement.num_layers) + " layers of " +
         std::to_string(placement.num_logical_experts) + " experts";
}

}  // namespace

Status EngineCore::begin_rebalance(const protocol::Rebalance& rebalance) {
  const std::string what = "rebalance plan " + std::to_string(rebalance.plan_id);
  if (!current_) return error(ErrorCode::kFailedPrecondition, what + ": not serving yet");
  if (rebalance.generation != generation()) {
    return error(ErrorCode::kFailedPrecondition,
                 what + " is for generation " + std::to_string(rebalance.generation) +
                     ", this rank serves generation " + std::to_string(generation()));
  }
  if (newest_plan_id_ && rebalance.plan_id <= *newest_plan_id_) {
    return error(ErrorCode::kFailedPrecondition, what + " is not newer than plan " +
                                                     std::to_string(*newest_plan_id_) +
                                                     " of this generation");
  }
  const Placement& served = current_->placement;
  const Placement& target = rebalance.placement;
  if (target.num_ranks != served.num_ranks || target.slots_per_rank != served.slots_per_rank ||
      target.num_layers != served.num_layers ||
      target.num_logical_experts != served.num_logical_experts) {
    return error(ErrorCode::kInvalidArgument,
                 what + " has " + shape_of(target) + ", the generation serves " + shape_of(served));
  }
  if (Status valid = target.validate(); !valid.is_ok()) {
    return error(ErrorCode::kInvalidArgument, what + " is invalid: " + valid.message());
  }
  if (rebalance.layers_per_step < 1) {
    return error(ErrorCode::kInvalidArgument, what + " moves " +
                                                  std::to_string(rebalance.layers_per_step) +
                                                  " layers per step; at least 1");
  }
  if (held_plan_) {
    EEP_LOG_INFO(what << " replaces plan " << held_plan_->rebalance.plan_id
                      << ", which had not started");
  }
  newest_plan_id_ = rebalance.plan_id;
  held_plan_.emplace();
  held_plan_->rebalance = rebalance;
  EEP_LOG_INFO(what << " held (" << rebalance.layers_per_step
                    << " layers per step), waiting for every rank");
  return Status::ok();
}

void EngineCore::start_moving_plan() {
  moving_plan_ = std::move(held_plan_);
  held_plan_.reset();
  moving_plan_->started = Clock::now();
  EEP_LOG_INFO("rebalance plan " << moving_plan_->rebalance.plan_id
                                 << ": every rank holds it, moving "
                                 << moving_plan_->rebalance.layers_per_step << " layers per step");
}

Status EngineCore::move_layers(StepResult* result) {
  RebalancePlan& plan = *moving_plan_;
  // The counts so far were routed over the old placement (reported) or, after a step that moved
  // layers, over a mix of old and new (dropped).
  auto load = take_expert_load(plan.num_layers_moved == 0);
  if (load && !result->expert_load) result->expert_load = std::move(load);
  const int num_layers = current_->placement.num_layers;
  const int end_layer =
      std::min(num_layers, plan.num_layers_moved + plan.rebalance.layers_per_step);
  std::string failure;
  for (int layer = plan.num_layers_moved; layer < end_layer && failure.empty(); ++layer) {
    const std::vector<int>& row = plan.rebalance.placement.phy2log[layer];
    const Clock::time_point move_started = Clock::now();
    auto moved = backend_->executor().move_layer_experts(layer, row, current_->ep_group.get());
    plan.move_seconds += std::chrono::duration<double>(Clock::now() - move_started).count();
    if (!moved.is_ok()) {
      failure = "moving layer " + std::to_string(layer) + " failed: " + moved.status().to_string() +
                " (layers [0, " + std::to_string(layer) +
                ") are on the new placement, the others on the old)";
      break;
    }
    plan.bytes_moved += moved.value();
    current_->placement.phy2log[layer] = row;
    ++plan.num_layers_moved;
  }
  if (current_->control_group) {
    // Tokens go where the placement says, so every rank must serve the same one: a move that
    // failed on some ranks only (a collective that broke half way) leaves this generation unable
    // to serve, and the step fails as on any broken collective.
    int64_t agreed[2] = {plan.num_layers_moved, -plan.num_layers_moved};
    EEP_RETURN_IF_ERROR(current_->control_group->all_reduce(agreed, 2, ReduceOp::kMax));
    if (agreed[0] != -agreed[1]) {
      return error(ErrorCode::kInternal,
                   "rebalance plan " + std::to_string(plan.rebalance.plan_id) +
                       ": the ranks moved between " + std::to_string(-agreed[1]) + " and " +
                       std::to_string(agreed[0]) +
                       " layers, so their expert placements differ; this generation cannot "
                       "serve (" +
                       (failure.empty() ? std::string("another rank's move failed") : failure) +
                       ")");
    }
  }
  if (!failure.empty()) {
    result->rebalance_done = finish_rebalance(std::move(failure));
  } else if (plan.num_layers_moved == num_layers) {
    plan.ended = Clock::now();
  }
  return Status::ok();
}

void EngineCore::end_moving_step(Clock::time_point step_started, StepResult* result) {
  const Clock::time_point now = Clock::now();
  if (moving_plan_) {
    RebalancePlan& plan = *moving_plan_;
    plan.longest_step_gap_ms = std::max(
        plan.longest_step_gap_ms, milliseconds_between(last_step_end_.value_or(step_started), now));
    if (plan.num_layers_moved == current_->placement.num_layers) {
      result->rebalance_done = finish_rebalance("");
    }
  }
  last_step_end_ = now;
}

protocol::RebalanceDone EngineCore::finish_rebalance(std::string error) {
  EEP_CHECK(moving_plan_.has_value());
  const RebalancePlan& plan = *moving_plan_;
  protocol::RebalanceDone done;
  done.generation = current_->assign.generation;
  done.plan_id = plan.rebalance.plan_id;
  done.rank = current_->assign.rank;
  done.bytes_moved = plan.bytes_moved;
  const Clock::time_point ended = error.empty() ? plan.ended : Clock::now();
  done.seconds = std::chrono::duration<double>(ended - plan.started).count();
  done.move_seconds = plan.move_seconds;
  done.longest_step_gap_ms = plan.longest_step_gap_ms;
  done.error = std::move(error);
  if (done.error.empty()) {
    EEP_LOG_INFO("rebalance plan " << done.plan_id << " moved: " << done.bytes_moved
                                   << " bytes received in " << done.seconds << " s ("
                                   << done.move_seconds << " s of it moving), longest step gap "
                                   << done.longest_step_gap_ms << " ms");
  } else {
    EEP_LOG_ERROR("rebalance plan " << done.plan_id << " stopped: " << done.error);
  }
  moving_plan_.reset();
  return done;
}

std::optional<protocol::ExpertLoad> EngineCore::take_expert_load(bool report) {
  std::vector<std::vector<int64_t>> counts = backend_->executor().take_slot_counts();
  const uint64_t num_steps = num_steps_since_report_;
  num_steps_since_report_ = 0;
  last_report_ = Clock::now();
  if (!report || num_steps == 0) return std::nullopt;
  return protocol::ExpertLoad{current_->assign.generation, current_->assign.rank, num_steps,
                              std::move(counts)};
}

}  // namespace eep::worker
