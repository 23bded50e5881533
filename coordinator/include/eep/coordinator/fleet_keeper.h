// Keeps the fleet at its target size (docs/fault_tolerance.md). The target is --dp, then the last
// scale that succeeded. When a member of the live generation is lost (its process died, its
// heartbeats stopped, or its peers' collectives failed and it did not report so), the generation is
// broken: the fleet recovers first (a new generation of the survivors and any waiting spare,
// ScaleFsm's recovery), then returns to the target size through ordinary scales that launch
// workers. A scale that fails (a worker crashing at start, a port taken, a peer lost) is retried
// with backoff; after --max-restarts failures within --restart-window-s the keeper gives up, says
// so in status, and the fleet serves at the size it has until an operator scales.
//
// The keeper owns no sockets and reads no clock: the coordinator's loop tells it what happened
// and asks next() what to start; every decision is a pure function of what it was told.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "eep/common/protocol.h"

namespace eep::coordinator {

using Clock = std::chrono::steady_clock;

struct KeeperOptions {
  int max_restarts = 5;  // failed scales tolerated within the window
  std::chrono::milliseconds restart_window{300000};
  std::chrono::milliseconds first_backoff{500};  // after the first failure; doubles
  std::chrono::milliseconds max_backoff{30000};
  // A recovery starts this long after the first loss, so that members lost together (one host,
  // one signal to several processes) are rebuilt around in one recovery, not one after another.
  std::chrono::milliseconds recovery_settle{50};
};

enum class KeeperAction {
  kNone,
  kRecover,        // the live generation is broken: rebuild it of its survivors (and spares)
  kScaleToTarget,  // the fleet is whole but not at its target size
};
std::string_view to_string(KeeperAction action);

// What the keeper decides on, read by the coordinator from its membership and ScaleFsm.
struct FleetView {
  int active_dp = 0;
  bool scale_running = false;
};

class FleetKeeper {
 public:
  explicit FleetKeeper(KeeperOptions options) : options_(options) {}

  // --dp, or a scale that succeeded: the size to keep. Clears a give-up and the backoff.
  void set_target(int dp);
  int target() const { return target_dp_; }
  // Past --max-restarts: no scale toward the target until an operator's (set_target).
  bool gave_up() const { return !gave_up_.empty(); }

  // A member of live generation `generation` was lost: the generation is broken until a newer
  // one is live. Counted once per member.
  void on_member_lost(int64_t generation, const std::string& reason, Clock::time_point now);
  // The live generation cannot be rebuilt (no survivor, no spare): it is forgotten, and the
  // fleet forms anew at the target size (its weights from the checkpoint).
  void on_nothing_to_recover(Clock::time_point now);
  // A scale or recovery was started by next()'s action.
  void on_started(KeeperAction action);
  // A scale (or recovery) was refused before it began (not enough workers, no port): tried
  // again after the backoff, not counted against the limit.
  void on_refused(const std::string& reason, Clock::time_point now);
  // A scale (or recovery) ended: `live_generation` is the membership's generation after it;
  // `ours`: next() started it (an operator's scale that fails was reported to the operator and
  // is not retried; one that succeeds sets the target).
  void on_scale_ended(bool succeeded, bool recovery, bool ours, int to_dp, int64_t live_generation,
                      const std::string& reason, Clock::time_point now);
  // A spare registered: a refused scale may go now.
  void on_spare_registered() { retry_at_.reset(); }

  // The live generation lost a member and no newer generation is live yet.
  bool broken() const { return broken_generation_.has_value(); }
  std::optional<int64_t> broken_generation() const { return broken_generation_; }

  KeeperAction next(const FleetView& view, Clock::time_point now) const;
  protocol::FleetHealth health(Clock::time_point now) const;

 private:
  void count_failure(const std::string& reason, Clock::time_point now);

  KeeperOptions options_;
  int target_dp_ = 0;
  std::optional<int64_t> broken_generation_;
  Clock::time_point broken_since_{};
  std::optional<Clock::time_point> retry_at_;
  std::chrono::milliseconds backoff_{0};
  std::deque<Clock::time_point> failures_;  // failed scales within the window
  std::string gave_up_;

  uint64_t num_failures_ = 0;                // members lost
  uint64_t failures_at_recovery_start_ = 0;  // num_failures_ when the last recovery started
  uint64_t num_recoveries_ = 0;
  uint64_t num_restarts_ = 0;  // scales toward the target after the fleet first formed
  bool formed_ = false;        // a scale succeeded once
  std::string last_failure_;
  std::optional<Clock::time_point> last_failure_at_;
  double last_recovery_s_ = 0;
};

}  // namespace eep::coordinator
