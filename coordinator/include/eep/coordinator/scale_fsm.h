// The scaling state machine of the coordinator (docs/scaling.md has the diagram). It carries the
// membership part of a scale: pick spares or launch workers for new ranks, assign generation g+1
// to every member (on a scale-down, also tell each leaving rank to hand over its weights), switch
// once all have acknowledged (a scale-down first lets the requests on its leaving ranks finish for
// a bounded time and migrates the rest), retire the surplus. The data-plane stages of DESIGN.md
// section 6 (standby groups, weight transfer, KV-cache agreement) run inside kWaitAcks, in every
// member of g+1: its acknowledgement says it has built g+1, with its build steps
// (record_build_report).
//
// The machine owns no sockets: each event handler updates membership and ports (in-memory state)
// and returns the actions the caller must carry out (launch, send, stop, migrate). Every waiting
// stage has a deadline; passing it rolls back to generation g, which never stopped serving, except
// in DRAIN_LEAVING (the scale goes on: switch, migrate) and RETIRE_LEAVING (g+1 serves already:
// kill). Only the coordinator's event loop calls it.
#pragma once

#include <chrono>
#include <deque>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "eep/common/protocol.h"
#include "eep/common/status.h"
#include "eep/coordinator/expert_layout.h"
#include "eep/coordinator/membership.h"
#include "eep/coordinator/port_allocator.h"

namespace eep::coordinator {

enum class ScaleStage {
  kIdle,           // no scale has run yet
  kWaitWorkers,    // the new ranks' workers (picked spares, launched ones) must register
  kWaitAcks,       // every member of g+1 must acknowledge its assignment
  kDrainLeaving,   // scale-down: requests on the leaving ranks may finish (bounded time)
  kRetireLeaving,  // g+1 is live; the surplus workers are told to exit and must go
  kSucceeded,      // terminal until the next scale
  kFailed,         // rolled back to g; terminal until the next scale
};
std::string_view to_string(ScaleStage stage);

// Why a generation is built: a scale an operator (or the fleet keeper) asked for, or the recovery
// of a generation that lost a member (docs/fault_tolerance.md). A recovery runs the same stages;
// its members are the survivors and any waiting spare, its weights come from the checkpoint, its
// assignments tell the survivors to abandon the broken generation, and rolling it back re-tells
// nothing (the broken generation cannot serve).
enum class ScaleKind { kScale, kRecover };
std::string_view to_string(ScaleKind kind);

struct LaunchWorker {
  std::string worker_id;
  int device_idx = 0;
};
struct SendAssign {
  std::string worker_id;
  protocol::Assign assign;
};
struct SendShutdown {
  std::string worker_id;
  std::string reason;
};
struct SendSwitch {  // the commit of a generation (protocol::Switch)
  std::string worker_id;
  protocol::Switch order;
};
struct StopWorker {  // through the launcher: SIGTERM (force: SIGKILL) or systemctl stop
  std::string worker_id;
  bool force = false;
};
// The router moves every request still on this (leaving) worker to the serving ranks now: prompt
// + tokens so far, cancelled on the worker, whose later outputs of them the router drops.
struct MigrateRequests {
  std::string worker_id;
  std::string reason;
};
using ScaleAction =
    std::variant<LaunchWorker, SendAssign, SendShutdown, SendSwitch, StopWorker, MigrateRequests>;

struct ScaleLimits {
  int max_workers = 0;  // what the launcher can run; 0 = it launches nothing
  bool can_launch = false;
  std::string local_host;  // host of workers this coordinator launches
  std::chrono::milliseconds stage_timeout{60000};
  // The model's experts when the coordinator knows them (--model): every Assign then carries its
  // generation's placement, round-robin for a new generation. Absent: workers place by
  // themselves.
  std::optional<ExpertLayout> experts;
  // How long a scale-down waits, once g+1 is built, for the requests on the leaving ranks to
  // finish before it switches and migrates the rest (DRAIN_LEAVING's deadline; 0: no waiting).
  std::chrono::milliseconds drain_timeout{5000};
  // Assigns name g (members, placement) so that g+1 takes its weights from it, and a scale-down
  // tells its leaving ranks to hand theirs over (docs/weight_transfer.md); false: every member
  // reads the checkpoint.
  bool weights_from_peers = true;
};

struct StageTiming {
  ScaleStage stage;
  double seconds = 0;
};

class ScaleFsm {
 public:
  ScaleFsm(Membership& membership, PortAllocator& ports, ScaleLimits limits);

  bool running() const;
  ScaleStage stage() const { return stage_; }

  // Validates and begins a scale to `to_dp` active ranks. Refused (nothing changed) when one is
  // running, dp is out of range, or ports or workers cannot be had. `launcher_live` lists worker
  // ids the launcher still runs (their ids are not reused). No actions and stage unchanged when
  // the fleet already has to_dp ranks.
  Result<std::vector<ScaleAction>> start(int to_dp, const std::vector<std::string>& launcher_live,
                                         Clock::time_point now);

  // Begins the recovery of the live generation, one of whose members is DEAD: a new generation
  // of the ACTIVE survivors (in rank order) and the registered spares, even at the same size.
  // Refused (kUnavailable) when neither a survivor nor a spare is left, or when a scale runs.
  Result<std::vector<ScaleAction>> start_recovery(Clock::time_point now);
  ScaleKind kind() const { return kind_; }

  std::vector<ScaleAction> on_registered(const std::string& worker_id, Clock::time_point now);
  std::vector<ScaleAction> on_assign_ack(const std::string& worker_id, int64_t generation,
                                         Clock::time_point now);
  // Adds how a member of g+1 built it (its ack: where its weights came from, its build steps) to
  // the scale's report; call before on_assign_ack. Acks of other generations are ignored.
  void record_build_report(const protocol::AssignAck& ack);
  // The worker died, exited or was declared dead (the membership already says so).
  std::vector<ScaleAction> on_worker_gone(const std::string& worker_id, const std::string& reason,
                                          Clock::time_point now);
  // A member could not take its part in g+1 (it acknowledged with an error): roll back.
  std::vector<ScaleAction> on_assign_failed(const std::string& worker_id, int64_t generation,
                                            const std::string& reason, Clock::time_point now);
  // The live generation lost a member (the fleet keeper recovers it next): a scale that has not
  // switched yet rolls back without re-telling the broken generation, and nothing re-tells it or
  // takes weights from it until a new generation is live.
  std::vector<ScaleAction> on_generation_broken(const std::string& reason, Clock::time_point now);
  // DRAIN_LEAVING: no request runs on the draining workers any more (the caller asks the
  // router); the scale switches. Nothing happens in any other stage.
  std::vector<ScaleAction> on_leaving_drained(Clock::time_point now);
  std::vector<ScaleAction> on_tick(Clock::time_point now);

  // The workers the router must give no new request: the leaving ranks of a running scale-down,
  // from its acceptance on (after the switch they are LEAVING, so no target anyway). Empty when
  // no scale runs, so a rolled-back scale-down gives them requests again.
  std::vector<std::string> draining() const;

  protocol::ScaleInfo info(Clock::time_point now) const;
  const std::vector<StageTiming>& timeline() const { return timeline_; }
  // The info of the last scales that ended (at most kNumRecent), oldest first.
  const std::deque<protocol::ScaleInfo>& recent() const { return recent_; }
  static constexpr size_t kNumRecent = 8;

  // The assignment of the current generation for one active worker (used to re-tell workers).
  std::optional<protocol::Assign> current_assignment(const std::string& worker_id) const;

  // The current generation's expert placement (absent without an ExpertLayout or before the
  // first generation). set_current_placement: a rebalance moved the generation to `placement`
  // (same ranks and slots), so assignments re-told from now on carry it.
  const std::optional<Placement>& current_placement() const { return current_placement_; }
  void set_current_placement(Placement placement);

 private:
  // start() and start_recovery(): the checks and members of a new generation of to_dp ranks.
  Result<std::vector<ScaleAction>> begin(ScaleKind kind, int to_dp,
                                         const std::vector<std::string>& launcher_live,
                                         Clock::time_point now);
  // Every member of the current generation is still ACTIVE: its ranks can hand their weights to
  // the next one, and a rollback can return to it.
  bool current_generation_intact() const;
  void enter(ScaleStage stage, Clock::time_point now);
  std::vector<ScaleAction> send_assignments(Clock::time_point now);
  std::vector<ScaleAction> end_acks(Clock::time_point now);
  std::vector<ScaleAction> switch_generation(Clock::time_point now);
  std::vector<ScaleAction> roll_back(const std::string& reason, Clock::time_point now);
  protocol::Assign assignment_for(int rank, int64_t generation,
                                  const std::vector<std::string>& members,
                                  const protocol::StoreEndpoint& control,
                                  const protocol::StoreEndpoint& ep,
                                  const std::optional<Placement>& placement) const;
  std::string free_worker_id(const std::vector<std::string>& launcher_live,
                             const std::set<std::string>& taken, int* index) const;

  Membership& membership_;
  PortAllocator& ports_;
  ScaleLimits limits_;

  ScaleStage stage_ = ScaleStage::kIdle;
  ScaleKind kind_ = ScaleKind::kScale;
  Clock::time_point started_{};
  Clock::time_point stage_started_{};
  Clock::time_point finished_{};
  std::vector<StageTiming> timeline_;
  int from_dp_ = 0;
  int to_dp_ = 0;
  int64_t target_generation_ = -1;
  std::string failure_reason_;

  std::vector<std::string> members_;       // g+1, index = rank
  std::vector<std::string> leaving_;       // ranks of g that g+1 drops
  std::set<std::string> picked_spares_;    // were SPARE before this scale
  std::set<std::string> launched_;         // launched for this scale
  std::set<std::string> awaiting_;         // registrations, acks or exits still due
  protocol::StoreEndpoint control_store_;  // of g+1
  protocol::StoreEndpoint ep_store_;
  std::optional<Placement> placement_;    // of g+1
  uint64_t weight_bytes_from_peers_ = 0;  // summed over g+1's acks
  uint64_t weight_bytes_from_checkpoint_ = 0;
  double weight_transfer_s_ = 0;                       // the slowest rank's
  std::vector<protocol::StageDuration> build_stages_;  // each the slowest rank's

  // What the current generation's members were told (re-sent after a rollback).
  std::vector<std::string> current_members_;
  protocol::StoreEndpoint current_control_store_;
  protocol::StoreEndpoint current_ep_store_;
  std::optional<Placement> current_placement_;
  bool current_broken_ = false;  // on_generation_broken() until the next commit
  std::deque<protocol::ScaleInfo> recent_;
};

}  // namespace eep::coordinator
