// A child process as an RAII object: spawned with fork/exec, watched through a pidfd (readable
// the moment the child exits, so an event loop sees a death at once), stopped with SIGTERM then
// SIGKILL, always reaped. Used by the local and systemd launchers and by the integration tests.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "eep/common/status.h"

namespace eep {

struct SpawnOptions {
  // Added to (or replacing in) the parent's environment, which passes on all but systemd's
  // NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (those of the parent's unit).
  std::map<std::string, std::string> env;
  std::string log_path;         // stdout and stderr appended here; empty: inherit
  bool die_with_parent = true;  // SIGTERM to the child when the parent dies
};

// The first executable `name` on PATH (or name itself when it holds a '/'); nullopt if none.
std::optional<std::string> find_in_path(const std::string& name);

class ChildProcess {
 public:
  static Result<ChildProcess> spawn(const std::vector<std::string>& argv,
                                    const SpawnOptions& options = {});

  ChildProcess() = default;
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();  // stop(kDefaultGrace) if still running

  pid_t pid() const { return pid_; }
  // Becomes readable when the child exits; -1 when there is no child.
  int pidfd() const { return pidfd_; }
  bool valid() const { return pid_ > 0; }

  // Reaps without blocking. True while the child runs.
  bool running();
  // The wait status once reaped (see WIFEXITED etc.).
  std::optional<int> wait_status() const { return wait_status_; }
  // Human-readable: "exited with 0", "killed by signal 9".
  std::string describe_exit() const;

  void signal(int signo);
  // Waits up to timeout for the child to exit; true when it has.
  bool wait_for(std::chrono::milliseconds timeout);
  // SIGTERM, wait up to grace, then SIGKILL and reap. Returns the wait status.
  int stop(std::chrono::milliseconds grace);

  static constexpr std::chrono::milliseconds kDefaultGrace{3000};

 private:
  void reset();
  pid_t pid_ = -1;
  int pidfd_ = -1;
  std::optional<int> wait_status_;
};

}  // namespace eep
