// The worker daemon: registration, heartbeats, assignments and orders from the coordinator,
// requests in and tokens out, clean exit on SIGTERM; between message drains it runs the engine
// (engine/engine_core.h) one step at a time. One thread runs it.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <zmq.hpp>

#include "eep/common/handshake_monitor.h"
#include "eep/common/protocol.h"
#include "eep/common/service_notifier.h"
#include "eep/common/status.h"
#include "eep/worker/daemon/heartbeat_sender.h"
#include "eep/worker/daemon/worker_config.h"
#include "eep/worker/engine/engine_core.h"

namespace eep::worker {

class WorkerDaemon {
 public:
  explicit WorkerDaemon(WorkerConfig config);

  // Registers, then serves until told to stop. signal_fd: a signalfd for SIGTERM/SIGINT, or -1.
  // Returns the exit code: 0 on an order or a signal, 1 when registration failed.
  int run(int signal_fd);
  // After run(): the coordinator declared this worker dead and asked it to register again as a
  // new spare (its host was cut off and came back, docs/hosts.md); main() starts the program
  // afresh, which nothing of the old rank survives.
  bool register_again() const { return register_again_; }

 private:
  Status connect_and_register(int signal_fd);
  void handle(const protocol::Envelope& envelope);
  // Serving: one pass of the engine between message drains (see engine_core.h).
  void serve_once();
  // A collective of the current generation failed (a peer died or hangs): abandon it, keep the
  // requests, tell the coordinator, wait for its next assignment (docs/fault_tolerance.md).
  void lose_generation(const std::string& reason);
  void send_outputs(std::vector<protocol::RequestOutput> outputs);
  void request_wake();
  template <typename T>
  void send(const T& message);
  void update_log_speaker();

  WorkerConfig config_;
  std::string fleet_token_;
  std::optional<CurveClientKeys> curve_;  // our keys on the control socket; none in plaintext
  zmq::context_t context_;
  zmq::socket_t socket_;
  std::unique_ptr<HandshakeMonitor> monitor_;  // why registering found no coordinator
  uint64_t next_seq_ = 1;
  std::chrono::milliseconds heartbeat_interval_{1000};
  std::unique_ptr<HeartbeatSender> heartbeat_;  // started once registered
  std::optional<protocol::Assign> assignment_;
  bool stop_ = false;
  bool register_again_ = false;
  std::string stop_reason_;

  std::unique_ptr<EngineCore> engine_;           // null when this worker serves no model
  std::optional<protocol::Assign> pending_ack_;  // acknowledged once its generation is built
  uint64_t wake_epoch_ = 0;                      // the newest wake seen
  bool idle_ = false;                            // the fleet agreed that nobody has work
  uint64_t idle_epoch_ = 0;                      // ... at this epoch; a wake above it resumes
  bool wake_requested_ = false;
  // Told to leave while still stepping with the others: exits when the fleet switches to the
  // generation without it (the coordinator's scale-down retires it there).
  bool leave_at_switch_ = false;
  uint64_t num_batches_ = 0;
  // systemd's Type=notify unit: READY=1 once registered, the watchdog fed from this loop (and
  // from registration's), the rank in STATUS=.
  ServiceNotifier notifier_;
};

}  // namespace eep::worker
