// What a daemon tells the service manager that started it (sd_notify(3)): READY=1 once it serves
// (the coordinator when its sockets are bound, a worker once registered), STATUS= lines for
// `systemctl status`, STOPPING=1, and WATCHDOG=1 keep-alives from the event loop, at half the
// interval of the unit's WatchdogSec=. Units: config/eep-coordinator.service,
// config/eep-worker@.service; docs/deployment.md.
//
// Every call is a no-op when the process was not started by systemd (no $NOTIFY_SOCKET), and in a
// build without libsystemd (EEP_SYSTEMD=OFF, or AUTO without libsystemd-dev: docs/dependencies.md),
// which says so once at start if $NOTIFY_SOCKET is set. Children never inherit the service's
// notification variables (subprocess.cpp drops them): only the main process speaks for the unit.
//
// Not thread-safe: one thread (the daemon's event loop) owns it.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace eep {

class ServiceNotifier {
 public:
  using Clock = std::chrono::steady_clock;

  // Reads $NOTIFY_SOCKET and the watchdog interval ($WATCHDOG_USEC, for this pid).
  ServiceNotifier();

  // True when notifications go somewhere: started by systemd (Type=notify) in a build with
  // libsystemd.
  bool active() const { return active_; }
  // The unit's WatchdogSec=, when it set one for this process.
  std::optional<std::chrono::microseconds> watchdog_interval() const { return watchdog_; }

  // READY=1 with a STATUS= line: the service is up (systemd's start job completes).
  void ready(const std::string& status);
  // A STATUS= line alone (what `systemctl status` shows under the unit).
  void status(const std::string& status);
  // STOPPING=1: the service began its shutdown.
  void stopping(const std::string& status);

  // WATCHDOG=1 when half the watchdog interval has passed since the last one. Call on every turn
  // of the event loop; a loop stuck longer than the whole interval gets the unit killed
  // (WatchdogSignal=, SIGABRT) and restarted.
  void feed_watchdog(Clock::time_point now);
  // How long the loop may wait before its next feed_watchdog(); nullopt without a watchdog. Caps
  // poll timeouts that could otherwise be longer than half the interval.
  std::optional<std::chrono::milliseconds> until_next_ping(Clock::time_point now) const;

 private:
  void send(const std::string& state);

  bool active_ = false;
  std::optional<std::chrono::microseconds> watchdog_;
  Clock::time_point next_ping_{};
};

}  // namespace eep
