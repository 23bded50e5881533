#include "eep/common/service_notifier.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "eep/common/log.h"

#if defined(EEP_HAVE_LIBSYSTEMD)
#include <systemd/sd-daemon.h>
#endif

namespace eep {
namespace {

// A STATUS= value is one line: a newline would start another assignment.
std::string one_line(const std::string& text) {
  std::string line = text;
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return line;
}

}  // namespace

ServiceNotifier::ServiceNotifier() {
  const bool started_by_systemd = std::getenv("NOTIFY_SOCKET") != nullptr;
#if defined(EEP_HAVE_LIBSYSTEMD)
  active_ = started_by_systemd;
  uint64_t usec = 0;
  // Also checks $WATCHDOG_PID against our pid: the watchdog is the main process's.
  if (active_ && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    watchdog_ = std::chrono::microseconds(usec);
    next_ping_ = Clock::now();
  }
#else
  if (started_by_systemd) {
    EEP_LOG_WARN(
        "started with $NOTIFY_SOCKET, but this build has no libsystemd (EEP_SYSTEMD, "
        "docs/dependencies.md): systemd gets no READY=1 and no watchdog pings, so a "
        "Type=notify unit fails to start; rebuild with libsystemd-dev installed, or run "
        "the unit as Type=simple without WatchdogSec=");
  }
#endif
}

void ServiceNotifier::send([[maybe_unused]] const std::string& state) {
#if defined(EEP_HAVE_LIBSYSTEMD)
  if (!active_) return;
  const int sent = sd_notify(0, state.c_str());
  if (sent < 0) EEP_LOG_WARN("sd_notify failed: " << std::strerror(-sent));
#endif
}

void ServiceNotifier::ready(const std::string& status) {
  send("READY=1\nSTATUS=" + one_line(status));
}

void ServiceNotifier::status(const std::string& status) {
  send("STATUS=" + one_line(status));
}

void ServiceNotifier::stopping(const std::string& status) {
  send("STOPPING=1\nSTATUS=" + one_line(status));
}

void ServiceNotifier::feed_watchdog(Clock::time_point now) {
  if (!watchdog_ || now < next_ping_) return;
  send("WATCHDOG=1");
  next_ping_ = now + *watchdog_ / 2;
}

std::optional<std::chrono::milliseconds> ServiceNotifier::until_next_ping(
    Clock::time_point now) const {
  if (!watchdog_) return std::nullopt;
  if (now >= next_ping_) return std::chrono::milliseconds(0);
  // Rounded up, so a loop that sleeps this long finds the ping due.
  return std::chrono::ceil<std::chrono::milliseconds>(next_ping_ - now);
}

}  // namespace eep
