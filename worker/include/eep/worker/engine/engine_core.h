// The engine of a serving rank (DESIGN.md section 5): the model, its KV cache and scheduler, and
// the process groups of the current generation. The daemon's loop feeds it requests and calls
// step(); step() keeps every rank of the generation in lockstep:
//   1. every rank votes (LockstepVote, elastic/lockstep_vote.h: has work, wake epoch, next
//      generation pending, switch ready, the step's shape, rebalance plans, weight transfer
//      state) and one small all-reduce on the control group agrees on the votes; decide() turns
//      the agreement into this step's decision, the same on every rank: whether anyone has
//      work, the newest wake epoch seen, whether every rank holds the coordinator's order to
//      switch to generation g+1 and can (built it, or leaves), whether every rank holds the same
//      rebalance plan (EPLB below), and whether this step sends weights to the next generation
//      (engine_weight_transfer.cpp: a chunk after the all-reduce);
//   2. when nobody has work the fleet goes idle at that epoch (the daemon then waits for a wake
//      above it); when every rank is ready for generation g+1, all switch to it (or retire) at
//      this same step;
//   3. otherwise the forward step runs (an empty, dummy batch on a rank without work, because the
//      MoE all-to-all is collective), tokens are sampled, the scheduler advances.
// Requests and their KV cache survive a generation switch: attention is local to the rank; only
// the expert placement and the groups change. One thread uses it.
//
// EPLB (DESIGN.md section 8), on the same all-reduce:
// - Load reports: the tokens this rank routed to each physical slot, taken from the executor and
//   put in a StepResult for the daemon to send, after a forward step once at least
//   kLoadReportSteps steps and kLoadReportInterval have passed since the previous report, and
//   when the fleet goes idle (so a short burst is not lost). The ranks step together, so their
//   reports cover the same steps, give or take the one at which the clock rule fires. A report
//   covers one generation and one placement: the counts pending at a switch are dropped; those
//   pending when a rebalance starts moving are reported then, those of the steps that move
//   layers are dropped, and the reports after this rank's RebalanceDone are over the new
//   placement.
// - Rebalance: a plan (begin_rebalance) is held until the all-reduce shows that every rank holds
//   the same plan id, nobody is moving another plan and no next generation is pending; then,
//   from that same step on, every rank moves the next layers_per_step layers (in layer order)
//   after the all-reduce and before the forward, one step after the other, also in steps where
//   nobody has work (the fleet does not go idle while moving). After its moves, each such step
//   all-reduces the number of layers moved, so that no forward runs while the ranks' placements
//   differ. A finished or stopped plan puts its RebalanceDone in the StepResult. A failed move
//   stops the plan (RebalanceDone.error; layers moved before it keep their new placement) but not
//   the step when it failed alike on every rank, as a move refused before any traffic is (every
//   rank has the same arguments); when it failed on some ranks only (a collective that broke),
//   the placements differ and the step fails, as on any broken collective: the daemon leaves the
//   lockstep and the fleet rebuilds. A generation switch drops held and moving plans.
#pragma once

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "eep/common/protocol.h"
#include "eep/common/status.h"
#include "eep/worker/comm/kv_store.h"
#include "eep/worker/comm/process_group.h"
#include "eep/worker/elastic/lockstep_vote.h"
#include "eep/worker/elastic/next_generation.h"
#include "eep/worker/elastic/weight_transfer.h"
#include "eep/worker/engine/backend.h"
#include "eep/worker/engine/scheduler.h"
#include "eep/worker/engine/step_timing.h"
#include "eep/worker/model/checkpoint.h"

namespace eep::worker {

struct EngineOptions {
  std::string model_dir;
  BackendOptions backend;               // the device, the KV cache, batch limits, the group timeout
  int slots_per_rank = 0;               // 0: the fewest that hold every expert once
  std::string bind_host = "127.0.0.1";  // where rank 0 serves the stores and Gloo binds
  // Weights from peers at a scale (docs/weight_transfer.md): the most bytes a rank sends, copies
  // or receives in one chunk, that is at one step boundary of the serving ranks.
  size_t weight_transfer_chunk_bytes = size_t{64} << 20;
  // How often the forward steps' time per phase is logged (step_timing.h); zero: never.
  std::chrono::milliseconds step_times_interval{0};
};

// How this rank built a generation (sent in its AssignAck): where its weights came from, and
// the build's steps with their durations (protocol::AssignAck::build_stages).
struct BuildReport {
  uint64_t bytes_from_peers = 0;
  uint64_t bytes_from_checkpoint = 0;
  double transfer_seconds = 0;  // first to last chunk
  std::vector<protocol::StageDuration> stages;
};

struct StepResult {
  bool idle = false;  // nobody had work: wait for a wake above idle_epoch
  uint64_t idle_epoch = 0;
  bool switched = false;  // this step moved to the next generation
  std::vector<protocol::RequestOutput> outputs;
  std::optional<protocol::ExpertLoad> expert_load;        // to send (before rebalance_done)
  std::optional<protocol::RebalanceDone> rebalance_done;  // a plan finished or stopped
};

class EngineCore {
 public:
  // Opens and validates the checkpoint; weights are loaded per generation.
  static Result<std::unique_ptr<EngineCore>> create(const EngineOptions& options);
  ~EngineCore();

  protocol::ModelCapacity capacity() const;
  protocol::WorkerLoad load() const;
  // The generation this rank steps in (-1 before the first).
  int64_t generation() const { return current_ ? current_->assign.generation : -1; }
  bool serving() const { return current_ != nullptr; }

  // Starts building generation `assign` (stores, groups, weights) on a helper thread. A newer
  // assignment replaces a next generation built or being built (abandon_next_generation).
  Status begin_generation(const protocol::Assign& assign);
  // This rank serves a generation that `assign` (rank -1: this rank is not in it) replaces
  // without it, a scale-down: it sends the weights only it holds to the staying ranks over the
  // current EP group between steps (docs/weight_transfer.md), then waits for the switch order.
  Status begin_weight_handover(const protocol::Assign& assign);
  // The next generation is built and waits for the others (or failed: the error).
  Result<bool> next_generation_built();
  // Of the built next generation (next_generation_built() was true).
  BuildReport build_report() const;
  // True once when this rank became ready to send its weights to the next generation: an idle
  // fleet must step so that the ranks agree on the transfer (the daemon asks for a wake).
  bool take_transfer_wake();
  // The coordinator committed generation `order.generation` (protocol::Switch): switch to it (or
  // retire, order.leave) at the first step at which every rank holds the order and can. Refused
  // when this rank neither built nor builds that generation (or leaves while serving nothing).
  Status order_switch(const protocol::Switch& order);
  // The scale was rolled back: drop the next generation, built or being built, and any order.
  void abandon_next_generation();
  // A collective of the current generation failed (a peer died or hangs), or the coordinator
  // recovers the fleet without a lost member (docs/fault_tolerance.md): destroys the current
  // generation's groups and the next generation, built or building; keeps the installed weights,
  // the scheduler's requests and their KV cache. The rank then serves nothing until it switches
  // to the generation the coordinator assigns next, like a new rank; the interrupted step runs
  // again there (the scheduler advances only after a forward). Nothing when not serving.
  void abandon_current_generation(std::string_view cause);
  // Whether step() may run: serving, or a new rank whose first generation is built and ordered.
  bool can_step() const;
  // The generation this rank is not part of any more (scale down): it stops stepping.
  bool retired() const { return next_stage_.is(NextGenerationStage::kRetired); }
  // The lifecycle of the next generation on this rank (elastic/next_generation.h).
  NextGenerationStage next_generation_stage() const { return next_stage_.stage(); }

  // Adds a request; a refused one comes back at once as a finished output with the error.
  std::optional<protocol::RequestOutput> submit(const protocol::SubmitRequest& request);
  // Drops a request and frees its KV blocks; its final "cancelled" output, or nullopt if unknown.
  std::optional<protocol::RequestOutput> cancel(uint64_t request_id);
  bool has_work() const { return scheduler_ && scheduler_->has_work(); }

  // One lockstep iteration (see the header comment). `wake_epoch` is the newest wake seen.
  Result<StepResult> step(uint64_t wake_epoch);

  // Holds a rebalance plan of the current generation until every rank holds it (see the header
  // comment). Refused (kFailedPrecondition / kInvalidArgument, nothing changes) when it is for
  // another generation, is not newer than a plan this generation already held, or its placement
  // does not fit (other ranks, slots per rank, layers or experts; invalid). A newer plan replaces
  // one held and not started; one arriving while another moves starts after it.
  Status begin_rebalance(const protocol::Rebalance& rebalance);
  // The placement the current generation serves on now (moved layers included). serving() only.
  const Placement& placement() const { return current_->placement; }

  // Load reports: after at least this many forward steps and this much time since the last one.
  static constexpr uint64_t kLoadReportSteps = 32;
  static constexpr std::chrono::milliseconds kLoadReportInterval{250};

 private:
  using Clock = std::chrono::steady_clock;
  struct Generation {
    protocol::Assign assign;
    std::unique_ptr<StoreServer> control_store;  // rank 0 only
    std::unique_ptr<StoreServer> ep_store;
    std::unique_ptr<ProcessGroup> control_group;  // null when world_size == 1
    std::unique_ptr<ProcessGroup> ep_group;
    std::unique_ptr<GenerationState> state;  // this rank's weights and exchange on the device
    Placement placement;                     // as served: a rebalance updates it layer by layer
    int num_kv_blocks = 0;                   // set by the first generation a rank builds
    int agreed_kv_blocks = 0;  // the fewest KV blocks of any rank of the generation (all-reduce)
    // Weights from peers (docs/weight_transfer.md): the plan, the chunks done, the sources.
    std::optional<WeightTransferPlan> transfer;
    size_t num_chunks_done = 0;
    double chunk_seconds = 0;  // inside the chunks (packing, exchange, unpacking)
    Clock::time_point transfer_started;
    Clock::time_point stage_started;  // of the build step that runs (BuildReport::stages)
    BuildReport report;
  };
  // A rebalance plan held or moving on this rank.
  struct RebalancePlan {
    protocol::Rebalance rebalance;
    int num_layers_moved = 0;  // layers [0, num_layers_moved) are on the new placement
    uint64_t bytes_moved = 0;
    Clock::time_point started;  // the first move
    Clock::time_point ended;    // the last move (set when every layer moved)
    double move_seconds = 0;    // inside move_layer_experts, summed over the steps
    double longest_step_gap_ms = 0;
  };
  EngineCore(EngineOptions options, Checkpoint checkpoint, std::unique_ptr<Backend> backend);
  // The checkpoint directory's last component: the model's name in the API.
  std::string model_name() const;
  // Assign.placement, checked against the assignment and the model, or the round-robin one.
  Result<Placement> placement_for(const protocol::Assign& assign) const;
  // Whether the installed weights are those `assign` (a recovery) names as this worker's in the
  // generation it replaces; true for a worker that was not in it (it sends nothing).
  bool keeps_previous_weights(const protocol::Assign& assign) const;
  Result<std::unique_ptr<Generation>> build_generation(const protocol::Assign& assign,
                                                       Placement placement,
                                                       std::unique_ptr<StoreServer> control_store,
                                                       std::unique_ptr<StoreServer> ep_store,
                                                       int own_kv_blocks, bool keeps_weights);
  // Ends the build step that runs (`stage` took from stage_started until now) and starts the
  // next one.
  static void end_build_stage(Generation& generation, const char* stage);
  // The end of a build on both threads: the KV cache size agreed over the generation's control
  // group (DESIGN.md section 6, SYNC_KV_CACHE_MEMORY).
  Status agree_on_kv_blocks(Generation& generation, int own_kv_blocks);
  // After a transfer, every member of the generation (where its last chunk ran: the engine thread
  // on a serving rank): each pair of its EP group exchanges a few bytes, so that the first MoE
  // step after the switch does not set up connections (NCCL connects peers lazily, on their
  // first transfer; pairs that exchanged no weights have not) and graphs can be captured at once.
  Status warm_up_ep_group(Generation& generation);
  // The agreed switch: the built next generation becomes the current one.
  Status switch_to_next_generation();
  // next_ when it is built (kBuilt), else null.
  const Generation* built_generation() const {
    return next_stage_.is(NextGenerationStage::kBuilt) ? next_.get() : nullptr;
  }
  // Drops the next generation in any stage (a build still running ends in the background).
  void drop_next_generation(std::string_view cause);
  // next_stage_.transition(), which must succeed: the table is the engine's contract.
  void advance(NextGenerationStage to, std::string_view cause);
  void drop_generation(std::unique_ptr<Generation> generation);
  void reap_abandoned_builds();

  // Every rank holds the held plan and nobody is busy (decide(): RebalanceAction::kStart): it
  // becomes the moving plan.
  void start_moving_plan();
  // Moves this step's layers of the moving plan; a failed move ends the plan into `result`. An
  // error when the ranks' placements differ afterwards (a move failed on some ranks only).
  Status move_layers(StepResult* result);
  // After a step that moved layers: its gap, and the RebalanceDone when every layer moved.
  void end_moving_step(Clock::time_point step_started, StepResult* result);
  protocol::RebalanceDone finish_rebalance(std::string error);

  // Weights from peers (engine_weight_transfer.cpp). Runs chunk number generation.num_chunks_done
  // of the transfer plan: packs this rank's sends and local copies from the installed weights
  // (engine thread), exchanges over the generation's EP group, unpacks into its state.
  Status run_transfer_chunk(Generation& generation);
  // After step()'s all-reduce, what decide() made of the transfer: starts it on this rank
  // (kStart) and runs this rank's next chunk (kStart, kRunChunk). A failed chunk fails the next
  // generation, not the step.
  void transfer_step(TransferAction action);
  // This rank's transfer fields of the lockstep vote (engine_weight_transfer.cpp).
  void fill_transfer_vote(LockstepVote& vote) const;
  // Takes the executor's counts: reported as an ExpertLoad when `report` and some steps ran,
  // else dropped; either way a new report window starts.
  std::optional<protocol::ExpertLoad> take_expert_load(bool report);

  EngineOptions options_;
  Checkpoint checkpoint_;
  std::unique_ptr<Backend> backend_;
  // Created with the first generation (the CUDA backend sizes the cache after its weights).
  std::unique_ptr<KvBlockManager> blocks_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<Generation> current_;
  // What the installed weights are while no generation is served after abandoning one (a lost
  // member): the rank and placement of that generation, as served (rebalanced layers included).
  // A recovery takes them as the survivors' share of the next generation's weights.
  struct KeptWeights {
    int rank = 0;
    Placement placement;
  };
  std::optional<KeptWeights> kept_weights_;
  // The next generation (elastic/next_generation.h): its stage, the helper thread's build
  // (kBuilding), and the generation itself (kReadyToSend and kSending: built but for the weights
  // this rank sends between steps, or a leaving rank's handover plan; kBuilt: waiting for the
  // switch).
  NextGenerationLifecycle next_stage_;
  std::future<Result<std::unique_ptr<Generation>>> building_;
  std::unique_ptr<Generation> next_;
  Status build_failure_;  // kFailed: why
  bool transfer_wake_ = false;
  // Builds of a rolled-back scale still running on their helper threads; dropped when done.
  std::vector<std::future<Result<std::unique_ptr<Generation>>>> abandoned_builds_;
  std::optional<protocol::Switch> switch_order_;  // the coordinator's, until the switch

  // EPLB, reset at every switch.
  std::optional<RebalancePlan> held_plan_;    // waiting for every rank to hold it
  std::optional<RebalancePlan> moving_plan_;  // every rank moves its layers, step by step
  std::optional<uint64_t> newest_plan_id_;    // of this generation: older plans are refused
  uint64_t num_steps_since_report_ = 0;
  Clock::time_point last_report_;
  // The end of the previous step that ran (a forward or moves); reset when the fleet goes idle,
  // so the step gap of a move never counts idle time.
  std::optional<Clock::time_point> last_step_end_;
  // Forward steps taken and the time their agreements waited for slower ranks (load()).
  uint64_t num_steps_ = 0;
  Clock::duration step_wait_{};
  StepTiming step_timing_;
};

}  // namespace eep::worker
