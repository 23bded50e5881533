// The coordinator's side of expert load balancing (docs/eplb.md): load reports in, plans out to
// every rank of the generation, completions back; the admin command that forces a plan; the
// metrics. The bookkeeping itself is EplbState's; this file does the I/O around it.
#include <iomanip>
#include <sstream>

#include "eep/common/log.h"
#include "eep/coordinator/coordinator.h"
#include "eep/coordinator/topology.h"

namespace eep::coordinator {
namespace {

using nlohmann::json;

// How often the balancedness gauges are refreshed from the window (each costs a pass over it).
constexpr std::chrono::seconds kEplbMetricsInterval{1};

std::string fixed(double value, int digits) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(digits) << value;
  return out.str();
}

std::string percent(int64_t part, int64_t whole) {
  return fixed(whole > 0 ? 100.0 * part / whole : 0.0, 1) + "%";
}

}  // namespace

void Coordinator::sync_eplb_generation() {
  if (eplb_.generation() == membership_.generation()) return;
  const int64_t generation = membership_.generation();
  if (auto dropped = eplb_.reset(generation, scale_->current_placement())) {
    EEP_LOG_WARN("EPLB: rebalance plan " << *dropped << " dropped: generation " << generation
                                         << " replaced the one it was moving");
  }
  eplb_warned_.clear();
  eplb_measure_after_.reset();  // a new generation starts from another placement
}

void Coordinator::on_expert_load(const std::string& worker_id, const protocol::Envelope& envelope) {
  sync_eplb_generation();
  auto report = protocol::parse_body<protocol::ExpertLoad>(envelope);
  Status status = report.status();
  const WorkerRecord* worker = membership_.find(worker_id);
  if (status.is_ok() && report->generation == membership_.generation() &&
      (worker->state != protocol::WorkerState::kActive || worker->rank != report->rank)) {
    status = error(ErrorCode::kInvalidArgument,
                   "expert load for rank " + std::to_string(report->rank) + " from worker " +
                       worker_id + ", which holds rank " + std::to_string(worker->rank) + " as " +
                       std::string(protocol::to_string(worker->state)));
  }
  if (status.is_ok()) status = eplb_.add_load(report.value());
  if (!status.is_ok()) {
    // Once per worker and generation: a confused worker reports every few steps.
    if (eplb_warned_.insert(worker_id).second) {
      EEP_LOG_WARN("EPLB: ignoring expert load from " << worker_id << ": " << status.to_string());
    }
    return;
  }
  // Rebalancing waits while a scale runs: the next generation gets a fresh placement anyway. A
  // plan of a dropped generation may still be computing: the next check waits for it.
  if (scale_->running() || shutting_down_ || eplb_planner_.busy()) return;
  if (auto request = eplb_.due_plan(Clock::now())) start_planning(std::move(*request));
}

void Coordinator::start_planning(PlanRequest request) {
  request.test_load = eplb_test_load_;
  // The hierarchical policy over the hosts when each holds an equal block of consecutive ranks
  // (docs/hosts.md); rebalance_experts falls back to the global policy, as eplb.py does, when the
  // groups do not split evenly over the hosts.
  std::vector<std::string> hosts_by_rank;
  for (const WorkerRecord* worker : membership_.active_by_rank()) {
    hosts_by_rank.push_back(worker->host);
  }
  request.config.num_nodes = num_uniform_hosts(hosts_by_rank);
  request.config.num_groups = config_.eplb_num_groups;
  const bool hierarchical =
      request.config.num_nodes > 1 && request.config.num_groups % request.config.num_nodes == 0;
  EEP_LOG_INFO("EPLB: policy " << (hierarchical ? "hierarchical" : "global") << " ("
                               << request.config.num_nodes << " hosts of equal rank blocks, "
                               << request.config.num_groups << " expert groups)");
  EEP_LOG_INFO("EPLB: planning on " << request.window_steps << " steps of load"
                                    << (request.forced ? " (forced by eplb_rebalance)" : "")
                                    << (request.test_load ? ", and the --eplb-test-load shape" : "")
                                    << ", off the event loop");
  eplb_longest_iteration_ = Clock::duration::zero();
  eplb_planner_.submit(std::move(request));
}

void Coordinator::note_loop_iteration(Clock::duration busy) {
  if (eplb_planner_.busy()) eplb_longest_iteration_ = std::max(eplb_longest_iteration_, busy);
}

void Coordinator::on_plan_ready(PlanResult result) {
  const double longest_ms =
      std::chrono::duration<double, std::milli>(eplb_longest_iteration_).count();
  const double plan_ms = result.seconds * 1e3;
  auto decision = eplb_.on_planned(std::move(result), Clock::now());
  if (!decision.is_ok()) {
    EEP_LOG_ERROR("EPLB: cannot plan: " << decision.status().to_string());
    return;
  }
  if (!decision.value()) {
    EEP_LOG_INFO("EPLB: a plan of an earlier generation was dropped");
    return;
  }
  const PlannedRebalance& plan = decision.value()->plan;
  EEP_LOG_INFO("EPLB: plan ready in " << fixed(plan_ms, 1)
                                      << " ms off the event loop; the loop's longest iteration "
                                         "meanwhile "
                                      << fixed(longest_ms, 2) << " ms");
  if (decision.value()->send) {
    send_rebalance(plan, plan.forced
                             ? "forced by eplb_rebalance"
                             : "every " + std::to_string(config_.eplb_step_interval) + " steps");
  } else {
    EEP_LOG_INFO("EPLB: balancedness " << fixed(plan.current_balancedness, 4) << " over "
                                       << plan.window_steps << " steps; a new placement would give "
                                       << fixed(plan.predicted_balancedness, 4) << " changing "
                                       << plan.slots_changed << " slots, not worth moving experts");
  }
}

void Coordinator::send_rebalance(const PlannedRebalance& plan, const std::string& why) {
  EEP_LOG_INFO("EPLB rebalance " << plan.plan_id << " (" << why << "): balancedness "
                                 << fixed(plan.current_balancedness, 4) << " -> predicted "
                                 << fixed(plan.predicted_balancedness, 4) << " (from scratch "
                                 << fixed(plan.scratch_balancedness, 4) << ") over "
                                 << plan.window_steps << " steps; " << plan.slots_changed << " of "
                                 << plan.num_slots << " expert slots change ("
                                 << percent(plan.slots_changed, plan.num_slots) << "), "
                                 << config_.eplb_layers_per_step << " layers per step");
  protocol::Rebalance message;
  message.generation = plan.generation;
  message.plan_id = plan.plan_id;
  message.layers_per_step = config_.eplb_layers_per_step;
  message.placement = plan.placement;
  for (const WorkerRecord* worker : membership_.active_by_rank()) {
    send_to_worker(worker->id, message);
  }
}

void Coordinator::on_rebalance_done(const std::string& worker_id,
                                    const protocol::Envelope& envelope) {
  sync_eplb_generation();
  auto done = protocol::parse_body<protocol::RebalanceDone>(envelope);
  if (!done.is_ok()) {
    EEP_LOG_WARN("from " << worker_id << ": " << done.status().to_string());
    return;
  }
  if (!done->error.empty()) {
    EEP_LOG_ERROR("EPLB rebalance " << done->plan_id << ": rank " << done->rank << " (" << worker_id
                                    << ") failed: " << done->error);
  }
  if (auto outcome = eplb_.on_done(done.value())) finish_rebalance(*outcome);
}

void Coordinator::finish_rebalance(const RebalanceOutcome& outcome) {
  const PlannedRebalance& plan = outcome.plan;
  if (!outcome.status.is_ok()) {
    EEP_LOG_ERROR("EPLB rebalance " << plan.plan_id << " failed, the old placement stays: "
                                    << outcome.status.to_string());
    if (eplb_metrics_) eplb_metrics_->count_failed_rebalance();
    return;
  }
  scale_->set_current_placement(plan.placement);
  eplb_measure_after_ = std::make_pair(plan.plan_id, plan.predicted_balancedness);
  EEP_LOG_INFO("EPLB rebalance " << plan.plan_id << " done: balancedness "
                                 << fixed(plan.current_balancedness, 4) << " -> predicted "
                                 << fixed(plan.predicted_balancedness, 4) << "; "
                                 << fixed(outcome.bytes_moved / 1e6, 1) << " MB moved in "
                                 << fixed(outcome.seconds, 3) << " s, "
                                 << fixed(outcome.move_seconds, 3)
                                 << " s of it moving (slowest rank), longest step gap "
                                 << fixed(outcome.longest_step_gap_ms, 1) << " ms");
  if (eplb_metrics_) {
    eplb_metrics_->count_rebalance(outcome.bytes_moved, outcome.longest_step_gap_ms);
  }
}

void Coordinator::advance_eplb(Clock::time_point now) {
  sync_eplb_generation();
  if (auto result = eplb_planner_.take()) {
    if (scale_->running() || shutting_down_) {
      // Experts must not move under a scale; the next generation starts from a new placement.
      eplb_.drop_planning();
      EEP_LOG_INFO("EPLB: plan dropped: a scale started while it was computed");
    } else {
      on_plan_ready(std::move(*result));
    }
  }
  if (auto outcome = eplb_.on_tick(now)) finish_rebalance(*outcome);
  if (eplb_measure_after_ &&
      eplb_.window_steps() >= static_cast<uint64_t>(config_.eplb_window_size)) {
    if (auto measured = eplb_.measured()) {
      EEP_LOG_INFO("EPLB rebalance " << eplb_measure_after_->first << ": balancedness measured "
                                     << fixed(measured->mean, 4) << " over " << eplb_.window_steps()
                                     << " steps on its placement (predicted "
                                     << fixed(eplb_measure_after_->second, 4) << ")");
    }
    eplb_measure_after_.reset();
  }
  if (eplb_metrics_ && now >= next_eplb_metrics_) {
    if (auto measured = eplb_.measured()) {
      eplb_metrics_->set_balancedness(measured->mean, measured->per_layer);
    }
    next_eplb_metrics_ = now + kEplbMetricsInterval;
  }
}

json Coordinator::admin_eplb_rebalance(const protocol::AdminRequest& request) {
  auto refuse = [&](ErrorCode code, const std::string& message) {
    EEP_LOG_WARN("eplb_rebalance refused: " << message);
    return protocol::admin_error(request.seq, error(code, message));
  };
  if (!config_.enable_eplb) {
    return refuse(ErrorCode::kFailedPrecondition,
                  "EPLB is not enabled; start the coordinator with --enable-eplb (and --model)");
  }
  if (shutting_down_) return refuse(ErrorCode::kUnavailable, "the coordinator is stopping");
  if (scale_->running()) {
    const protocol::ScaleInfo scale = scale_->info(Clock::now());
    return refuse(ErrorCode::kFailedPrecondition,
                  "a scale " + std::to_string(scale.from_dp) + "->" + std::to_string(scale.to_dp) +
                      " is running; rebalance once it has finished");
  }
  sync_eplb_generation();
  if (eplb_planner_.busy()) {
    return refuse(ErrorCode::kFailedPrecondition,
                  "a rebalance is being planned; wait for it (eepctl status)");
  }
  auto plan_request = eplb_.force_plan(Clock::now());
  if (!plan_request.is_ok()) {
    return refuse(plan_request.status().code(), plan_request.status().message());
  }
  const uint64_t window_steps = plan_request->window_steps;
  start_planning(std::move(plan_request).value());
  // The plan is computed off the loop; it is sent once ready, whatever its gain, and the log
  // and status show it (plan id, predicted balancedness, slots changed).
  json reply = {{"planning", true},
                {"generation", eplb_.generation()},
                {"window_steps", window_steps},
                {"current_balancedness", nullptr}};
  if (auto measured = eplb_.measured()) reply["current_balancedness"] = measured->mean;
  return protocol::admin_ok(request.seq, reply);
}

}  // namespace eep::coordinator
