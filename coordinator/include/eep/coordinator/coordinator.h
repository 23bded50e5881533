// The coordinator daemon: one event-loop thread owns membership, ports, the launcher and the
// scaling state machine, and serves the admin and control sockets (DESIGN.md sections 3-4).
// Nothing here is locked: only run() touches this state.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include <zmq.hpp>

#include "eep/common/log.h"
#include "eep/common/zmq_util.h"

#include "eep/common/protocol.h"
#include "eep/common/service_notifier.h"
#include "eep/coordinator/coordinator_config.h"
#include "eep/coordinator/eplb_state.h"
#include "eep/coordinator/fleet_keeper.h"
#include "eep/coordinator/http_api.h"
#include "eep/coordinator/launcher.h"
#include "eep/coordinator/membership.h"
#include "eep/coordinator/metrics.h"
#include "eep/coordinator/model_text.h"
#include "eep/coordinator/port_allocator.h"
#include "eep/coordinator/rank_metrics.h"
#include "eep/coordinator/router.h"
#include "eep/coordinator/scale_fsm.h"
#include "eep/coordinator/serving_inbox.h"
#include "eep/coordinator/zap_handler.h"

namespace eep::coordinator {

class Coordinator {
 public:
  // Validates the configuration, reads token files, binds the sockets. Refuses a non-loopback
  // admin address without a token file.
  static Result<std::unique_ptr<Coordinator>> create(const CoordinatorConfig& config,
                                                     const std::string& argv0);
  ~Coordinator();

  // Serves until a shutdown command or SIGTERM/SIGINT (the caller blocks them and passes a
  // signalfd, or -1). Returns the process exit code.
  int run(int signal_fd);

  const std::string& admin_endpoint() const { return admin_endpoint_; }
  // What the HTTP API talks to (thread-safe).
  ServingFrontend& frontend() { return inbox_; }
  const std::string& control_endpoint() const { return control_endpoint_; }

 private:
  Coordinator(const CoordinatorConfig& config, PortAllocator ports);

  // the admin socket (coordinator_admin.cpp)
  void handle_admin(std::vector<zmq::message_t>& frames);
  // The reply to one admin request frame; `seq` receives the request's seq once it is read.
  nlohmann::json admin_reply(std::string_view body, uint64_t* seq);
  nlohmann::json admin_status(uint64_t seq);
  nlohmann::json admin_scale(const protocol::AdminRequest& request);
  protocol::StatusReply status_reply() const;
  protocol::WorkerInfo worker_info(const WorkerRecord& worker, Clock::time_point now) const;

  // security (coordinator_security.cpp, docs/security.md)
  // CURVE on the admin and control sockets, with the ZAP handler; before they bind.
  Status secure_sockets();
  // SIGHUP: authorized_keys read again (key rotation).
  void reload_authorized_keys();
  // True when the connection that sent `frames` may speak for the worker id it presents
  // (always with --insecure-plaintext); a refusal is logged.
  bool sender_authorized(std::vector<zmq::message_t>& frames, const std::string& worker_id);
  // control (coordinator.cpp)
  void handle_control(std::vector<zmq::message_t>& frames);
  void on_register(const std::string& identity, const protocol::Envelope& envelope);
  void on_worker_gone(const std::string& worker_id, const std::string& reason, bool clean);
  template <typename T>
  void send_to_worker(const std::string& worker_id, const T& message);
  void apply(const std::vector<ScaleAction>& actions);
  // DRAIN_LEAVING ends once the router has no request on the leaving ranks.
  void advance_drain(Clock::time_point now);
  void check_heartbeats();
  void reap_launched();
  void update_log_speaker();
  void begin_shutdown(const std::string& why);
  // fault tolerance (coordinator_recovery.cpp, docs/fault_tolerance.md)
  // A heartbeat from a worker's heartbeat socket (protocol::heartbeat_identity).
  void on_heartbeat(const std::string& worker_id, const protocol::Envelope& envelope);
  // A worker declared DEAD speaks again (a host cut off and back, a stopped process resumed
  // where no launcher killed it): it is told to start afresh and register as a spare, at most
  // once per heartbeat timeout (docs/hosts.md).
  void tell_dead_worker_to_register_again(const WorkerRecord& worker, Clock::time_point now);
  // A member's collective failed: it abandoned the live generation and waits.
  void on_generation_lost(const std::string& worker_id, const protocol::Envelope& envelope);
  // Members reported the live generation lost and nobody is known dead: once the grace (the
  // heartbeat timeout) passed, the members that did not report are hung, and are killed.
  void check_lost_reports(Clock::time_point now);
  // An ACTIVE member was lost (`what`: who and why): the live generation is broken; the keeper
  // recovers it.
  void on_member_lost(const std::string& what, Clock::time_point now);
  // Tells the keeper how a scale ended and starts what it decides (recover, return to target).
  void keep_fleet(Clock::time_point now);
  // serving (coordinator_serving.cpp)
  void drain_inbox();
  void on_need_wake();
  void publish_serving_state();
  // Whether requests wait for the fleet while no worker serves, and fails them once the wait is
  // over (--request-hold-s, docs/fault_tolerance.md).
  void hold_requests(Clock::time_point now);
  std::vector<std::string> active_ids() const;
  // Where new requests may go: the ACTIVE ranks but those a scale-down drains.
  std::vector<std::string> serving_targets() const;
  // EPLB (coordinator_eplb.cpp)
  void on_expert_load(const std::string& worker_id, const protocol::Envelope& envelope);
  void on_rebalance_done(const std::string& worker_id, const protocol::Envelope& envelope);
  void advance_eplb(Clock::time_point now);
  void sync_eplb_generation();
  void send_rebalance(const PlannedRebalance& plan, const std::string& why);
  // Hands the window to the planner thread; on_plan_ready() takes the result on a later
  // iteration. note_loop_iteration() records the longest iteration while a plan is computed.
  void start_planning(PlanRequest request);
  void on_plan_ready(PlanResult result);
  void note_loop_iteration(Clock::duration busy);
  void finish_rebalance(const RebalanceOutcome& outcome);
  nlohmann::json admin_eplb_rebalance(const protocol::AdminRequest& request);

  CoordinatorConfig config_;
  std::string admin_token_;
  std::string fleet_token_;
  zmq::context_t context_;
  std::unique_ptr<ZapHandler> zap_;  // null with --insecure-plaintext; outlives the sockets
  zmq::socket_t admin_socket_;
  zmq::socket_t control_socket_;
  std::string admin_endpoint_;
  std::string control_endpoint_;
  Membership membership_;
  PortAllocator ports_;
  std::unique_ptr<Launcher> launcher_;
  std::unique_ptr<ScaleFsm> scale_;
  uint64_t next_seq_ = 1;
  ServingInbox inbox_;
  Router router_;
  uint64_t wake_epoch_ = 0;
  int64_t started_unix_ = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
  // The checkpoint's tokenizer and chat template (--model), if any.
  ModelText model_text_;
  std::optional<protocol::ModelCapacity> capacity_;  // as the first serving worker reported it
  std::unique_ptr<HttpApi> http_;                    // after inbox_: it calls into it
  bool knows_experts_ = false;  // --model given: generations carry placements, EPLB measures
  EplbState eplb_;
  EplbPlanner eplb_planner_;
  std::shared_ptr<const EplbTestLoad> eplb_test_load_;  // --eplb-test-load
  Clock::duration eplb_longest_iteration_{};            // while the planner works
  // The last completed plan (id, predicted balancedness) until its placement's window is full:
  // then the measured balancedness is logged beside the prediction.
  std::optional<std::pair<uint64_t, double>> eplb_measure_after_;
  std::unique_ptr<EplbMetrics> eplb_metrics_;    // after http_: it registers in its registry
  std::unique_ptr<ScaleMetrics> scale_metrics_;  // likewise
  std::unique_ptr<RankMetrics> rank_metrics_;    // likewise
  Clock::time_point next_scale_metrics_{};
  Clock::time_point next_eplb_metrics_{};
  std::set<std::string> eplb_warned_;  // workers whose bad load reports were logged, this gen
  ThroughputLogger throughput_logger_;
  Clock::time_point next_throughput_log_{};
  FleetKeeper keeper_;
  std::map<std::string, Clock::time_point> register_again_sent_;  // by worker id
  std::set<std::string> lost_reports_;  // members that reported the live generation lost
  std::optional<Clock::time_point> first_lost_report_;
  bool scale_seen_running_ = false;    // keep_fleet(): a scale's end is seen once
  bool keeper_started_scale_ = false;  // ... and whether the keeper started it
  std::string last_refusal_;           // of the keeper's scales, logged when it changes
  bool shutting_down_ = false;
  Clock::time_point shutdown_deadline_{};
  // Since when no worker can take requests (hold_requests); unset while one can.
  std::optional<Clock::time_point> no_target_since_;
  // systemd's Type=notify unit: READY=1 when run() starts (the sockets are bound by then), the
  // watchdog fed every turn of the loop, STOPPING=1 at shutdown.
  ServiceNotifier notifier_;
};

// Sends one control message; a worker that is gone is logged, not an error (its death is seen
// by the launcher or the heartbeat).
template <typename T>
void Coordinator::send_to_worker(const std::string& worker_id, const T& message) {
  try {
    send_envelope(control_socket_, worker_id,
                  protocol::make_envelope(message, next_seq_++, membership_.generation(), "coord"));
  } catch (const zmq::error_t& e) {
    EEP_LOG_WARN("cannot send " << protocol::to_string(T::kType) << " to " << worker_id << ": "
                                << e.what());
  }
}

}  // namespace eep::coordinator
