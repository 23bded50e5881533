// Expert load balancing, the coordinator's bookkeeping (DESIGN.md section 8, docs/eplb.md): the
// sliding window of the expert loads the ranks report, the balancedness it measures, when a
// rebalance is due, the plan being moved to and how the last one ended. Pure logic over one
// generation at a time: the coordinator feeds it messages and the clock and does the I/O
// (sending Rebalance to every rank, logging, metrics). Only the coordinator's event loop calls it.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "eep/common/placement.h"
#include "eep/common/protocol.h"
#include "eep/common/status.h"
#include "eep/coordinator/eplb.h"
#include "eep/coordinator/eplb_planner.h"

namespace eep::coordinator {

struct EplbOptions {
  bool enabled = false;           // plan automatically; off: only measure
  uint64_t window_size = 1000;    // steps of load the window keeps, per rank
  uint64_t step_interval = 3000;  // rank 0's steps between two automatic checks
  int layers_per_step = 4;        // sent with each plan: layers moved per step boundary
  // An automatic plan is sent only when it predicts at least this much more balancedness than
  // the current placement measures: moving experts costs step time, a tiny gain does not pay
  // (--eplb-min-gain).
  double min_improvement = 0.01;
  // How plans trade balance for fewer moved experts (--eplb-balance-slack,
  // --eplb-max-moved-fraction) and on how many threads they are computed
  // (--eplb-planner-threads).
  MigrationOptions migration;
  int planner_threads = 0;
  // A plan whose RebalanceDone messages have not all arrived by then is given up as failed (a
  // rank died or hangs); generous because the move runs a few layers per step, and steps may be
  // slow under load.
  std::chrono::milliseconds rebalance_timeout{std::chrono::minutes(10)};
};

// A placement computed on the window, with the balancedness measured on the current placement
// and predicted for the new one (both over the same window).
struct PlannedRebalance {
  uint64_t plan_id = 0;
  int64_t generation = 0;
  Placement placement;
  double current_balancedness = 1.0;
  double predicted_balancedness = 1.0;
  double scratch_balancedness = 1.0;  // of a plan from scratch on the same window
  uint64_t window_steps = 0;
  int64_t slots_changed = 0;  // over all layers
  int64_t num_slots = 0;      // layers x slots
  double plan_seconds = 0;    // computing it (off the loop)
  bool forced = false;
};

// Where the EPLB bookkeeping stands; docs/eplb.md has the diagram. Measuring: the window fills,
// nothing is planned. Planning: a snapshot of the window is being planned off the loop (the
// window keeps filling). Moving: the plan was sent and the ranks move experts (the window is
// frozen: reports are over a placement that changes layer by layer).
enum class EplbStage { kMeasuring, kPlanning, kMoving };
const char* to_string(EplbStage stage);
// The transition table: whether `from` may go to `to` (reset() may go anywhere to kMeasuring).
bool eplb_transition_allowed(EplbStage from, EplbStage to);

// An automatic check: `send` when the plan is worth moving to (it is then in progress).
struct PlanDecision {
  PlannedRebalance plan;
  bool send = false;
};

// How a plan in progress ended: every rank answered (ok, or one reported an error), or it ran
// past its deadline. On success the plan's placement is now the current one.
struct RebalanceOutcome {
  PlannedRebalance plan;
  Status status;                   // ok, or what failed (the old placement stays)
  uint64_t bytes_moved = 0;        // summed over the ranks that answered
  double seconds = 0;              // the slowest rank
  double move_seconds = 0;         // the slowest rank's time spent moving
  double longest_step_gap_ms = 0;  // the worst rank
};

class EplbState {
 public:
  using Clock = std::chrono::steady_clock;

  explicit EplbState(EplbOptions options);

  const EplbOptions& options() const { return options_; }
  int64_t generation() const { return generation_; }
  const std::optional<Placement>& placement() const { return placement_; }
  EplbStage stage() const { return stage_; }
  // Planning or moving: no other plan may start.
  bool in_progress() const { return stage_ != EplbStage::kMeasuring; }

  // A new generation (a scale switched, or the first one formed) with its placement (none when
  // the model is unknown: then nothing is measured or planned). The window restarts; a plan in
  // progress belongs to the old generation and is dropped: its id is returned.
  std::optional<uint64_t> reset(int64_t generation, std::optional<Placement> placement);

  // One rank's report. Reports of another generation are stale and ignored (ok); so are reports
  // while a plan is in progress, since layers then change placement one by one and slot counts
  // would be credited to the wrong experts. kInvalidArgument for a rank out of range, a shape
  // other than layers x slots of the placement, or a negative count.
  Status add_load(const protocol::ExpertLoad& report);

  // The automatic trigger, after add_load: when enabled, nothing is in progress, the window has
  // data and rank 0 reported step_interval steps since the last check, the window to plan (now
  // planning); hand it to the EplbPlanner and its result to on_planned. nullopt: no check due.
  std::optional<PlanRequest> due_plan(Clock::time_point now);

  // An operator's forced rebalance: the window to plan now (planning); its plan is sent whatever
  // it gives (even without EPLB enabled: the caller decides whether that is allowed).
  // kFailedPrecondition when there is no placement, a plan is in progress, or no load was
  // reported yet.
  Result<PlanRequest> force_plan(Clock::time_point now);

  // The planner's result for the request in progress. The plan is sent (send = true, now moving)
  // when forced or when it beats the current placement by min_improvement and changes a slot;
  // else back to measuring, the next check step_interval steps later. nullopt for a result of a
  // request that is no longer in progress (a new generation came meanwhile); the planner's error
  // (back to measuring) if it refused the window, a broken invariant upstream.
  Result<std::optional<PlanDecision>> on_planned(PlanResult result, Clock::time_point now);
  // The plan being computed is not wanted any more (a scale started meanwhile): back to
  // measuring, the next check step_interval steps later. No effect unless planning.
  void drop_planning();

  // One rank's answer to the plan in progress (answers to other plans or generations are
  // ignored: nullopt). Once every rank answered, the outcome.
  std::optional<RebalanceOutcome> on_done(const protocol::RebalanceDone& done);
  // The plan in progress when it ran past rebalance_timeout, as a failed outcome.
  std::optional<RebalanceOutcome> on_tick(Clock::time_point now);
  // A member of the generation was lost (`what`): the plan being moved fails at once (kUnavailable)
  // instead of waiting for rebalance_timeout; the old placement stays. nullopt when none moves.
  std::optional<RebalanceOutcome> on_member_lost(const std::string& what);

  // Balancedness of the window on the current placement; nullopt while the window is empty.
  std::optional<Balancedness> measured() const;
  // The most steps any rank's window covers (ranks step in lockstep, so about all of them).
  uint64_t window_steps() const;
  // Logical load of the window: load[layer][expert], every rank's slot counts mapped through the
  // current placement. Empty without a placement.
  ExpertTokenCounts logical_load() const;

  protocol::EplbInfo info() const;

 private:
  struct Report {
    uint64_t num_steps = 0;
    std::vector<std::vector<int64_t>> counts;  // [layer][slot]
  };
  struct RankWindow {
    std::deque<Report> reports;              // oldest first
    uint64_t num_steps = 0;                  // sum over reports
    std::vector<std::vector<int64_t>> sums;  // [layer][slot], sum over reports
  };

  void clear_window();
  PlanRequest make_request(bool forced);
  void transition(EplbStage to);
  // Assigns the plan its id and makes it the one in progress.
  void begin(PlannedRebalance& plan, Clock::time_point now);
  RebalanceOutcome finish(Status status);

  EplbOptions options_;
  int64_t generation_ = -1;
  std::optional<Placement> placement_;
  std::vector<RankWindow> windows_;  // index = rank
  uint64_t steps_since_check_ = 0;   // rank 0's steps
  uint64_t next_plan_id_ = 1;        // across generations, so ids never repeat in logs
  // measured() of the window, recomputed after the window changed.
  mutable bool measured_valid_ = false;
  mutable std::optional<Balancedness> measured_;

  EplbStage stage_ = EplbStage::kMeasuring;
  uint64_t next_request_id_ = 1;
  uint64_t planning_request_id_ = 0;      // while planning
  std::optional<PlannedRebalance> plan_;  // while moving
  Clock::time_point plan_started_{};
  std::set<int> answered_;    // ranks whose RebalanceDone arrived
  RebalanceOutcome answers_;  // accumulates bytes, seconds, gap and the first error
  std::optional<protocol::EplbRebalanceInfo> last_;
};

}  // namespace eep::coordinator
