// Launchers start and stop worker daemons for the coordinator (DESIGN.md section 4):
//   local:   eep-worker child processes on this host, each watched through a pidfd so that a
//            death is seen the moment it happens;
//   systemd: `systemctl start|stop <unit>N` (the unit passes --worker-id wN to eep-worker);
//   none:    starts nothing; only workers that register by themselves join.
// A launched worker registers over the control socket like any other; the launcher only knows
// processes. Only the coordinator's event loop calls a launcher.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "eep/common/status.h"
#include "eep/coordinator/coordinator_config.h"

namespace eep::coordinator {

struct LaunchedExit {
  std::string worker_id;
  std::string description;     // "exited with 0", "killed by signal 9 (Killed)"
  bool clean = false;          // exited with status 0
  bool launch_failed = false;  // the launch itself failed (systemctl start returned an error)
};

class Launcher {
 public:
  virtual ~Launcher() = default;
  virtual std::string_view name() const = 0;
  // Most workers this launcher can have alive at once; 0 when it launches none.
  virtual int max_workers() const = 0;
  // Starts a worker that will register as `worker_id` with device index `device_idx`.
  virtual Status launch(const std::string& worker_id, int device_idx) = 0;
  // Stops a worker it started (SIGTERM then SIGKILL after grace, or systemctl stop). No-op for
  // one it does not know.
  virtual void stop(const std::string& worker_id, bool force) = 0;
  // Descriptors that become readable when something it started exits; poll them.
  virtual std::vector<int> watch_fds() const = 0;
  // Collects what exited since the last call.
  virtual std::vector<LaunchedExit> reap() = 0;
  // Stops everything it started (coordinator shutdown).
  virtual void stop_all() = 0;
  // The worker ids it started that have not exited yet.
  virtual std::vector<std::string> live_workers() const = 0;
};

// `coordinator_binary` locates eep-worker beside it when config.worker_binary is empty.
Result<std::unique_ptr<Launcher>> make_launcher(const CoordinatorConfig& config,
                                                const std::string& control_endpoint,
                                                const std::string& coordinator_binary);

}  // namespace eep::coordinator
