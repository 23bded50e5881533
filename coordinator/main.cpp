// eep-coordinator: the fleet's coordinator daemon (DESIGN.md section 1).
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include "eep/common/config.h"
#include "eep/common/log.h"
#include "eep/coordinator/coordinator.h"

int main(int argc, char** argv) {
  eep::coordinator::CoordinatorConfig config;
  CLI::App app{"eep-coordinator: membership, scaling, routing and the APIs of an elastic-ep fleet"};
  eep::add_config_option(app);
  eep::coordinator::add_coordinator_options(app, config);
  if (auto exit_code = eep::parse_args(app, argc, argv)) return *exit_code;

  eep::LogLevel level;
  eep::parse_log_level(config.log_level, &level);
  eep::set_log_level(level);
  eep::set_log_speaker("coord");

  // Signals arrive through a signalfd in the event loop. Blocked before any thread starts (the
  // ZeroMQ context's threads inherit the mask); children get a clean mask back.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);  // authorized_keys read again
  sigprocmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  const int signal_fd = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);

  auto coordinator = eep::coordinator::Coordinator::create(config, argv[0]);
  if (!coordinator.is_ok()) {
    EEP_LOG_ERROR("cannot start: " << coordinator.status().to_string());
    return 2;
  }
  const int code = coordinator.value()->run(signal_fd);
  close(signal_fd);
  return code;
}
