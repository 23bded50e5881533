// Heartbeats from their own thread and socket (docs/fault_tolerance.md, "Detection"). The engine
// thread may wait in a collective for up to --collective-timeout-ms when a peer stops; were its
// heartbeats to stop with it, the coordinator would take the waiting rank for the stopped one.
// So a thread that no collective blocks sends them, over a DEALER socket of its own whose
// identity is protocol::heartbeat_identity(worker id); the coordinator accepts nothing but
// heartbeats from such an identity.
//
// A heartbeat still says that the engine thread lives: the engine thread calls update() at every
// turn of its loop (a step, or a poll of at most the heartbeat interval), and the sender skips its
// beats while no turn came for `stall_limit` (longer than any collective may wait), so a worker
// whose engine thread hangs outside a collective is declared dead as a stopped one is.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <zmq.hpp>

#include "eep/common/client_keys.h"
#include "eep/common/protocol.h"
#include "eep/common/status.h"

namespace eep::worker {

class HeartbeatSender {
 public:
  struct Options {
    std::string coordinator_endpoint;
    std::string worker_id;
    std::chrono::milliseconds interval{1000};
    std::chrono::milliseconds stall_limit{20000};
    std::optional<CurveClientKeys> curve;  // the worker's own keys; none in plaintext
  };
  // `context` outlives the sender.
  HeartbeatSender(zmq::context_t& context, Options options);
  ~HeartbeatSender();  // stops the thread and closes its socket
  HeartbeatSender(const HeartbeatSender&) = delete;
  HeartbeatSender& operator=(const HeartbeatSender&) = delete;

  // Connects and starts beating (the first beat at once).
  Status start();
  // Engine thread, at every turn of its loop: what the next beats carry.
  void update(int64_t generation, int rank, const protocol::WorkerLoad& load);

 private:
  using Clock = std::chrono::steady_clock;
  void run();

  zmq::context_t& context_;
  Options options_;
  std::thread thread_;
  std::mutex mutex_;  // guards what follows
  std::condition_variable wake_;
  bool stopping_ = false;
  protocol::Heartbeat beat_;
  Clock::time_point last_turn_;
};

}  // namespace eep::worker
