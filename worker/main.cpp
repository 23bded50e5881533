// eep-worker: one rank of an elastic-ep fleet (DESIGN.md section 1).
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "eep/common/config.h"
#include "eep/common/log.h"
#include "eep/worker/worker_daemon.h"

int main(int argc, char** argv) {
  eep::worker::WorkerConfig config;
  CLI::App app{"eep-worker: one data-parallel / expert-parallel rank of an elastic-ep fleet"};
  eep::add_config_option(app);
  eep::worker::add_worker_options(app, config);
  if (auto exit_code = eep::parse_args(app, argc, argv)) return *exit_code;

  eep::LogLevel level;
  eep::parse_log_level(config.log_level, &level);
  eep::set_log_level(level);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigprocmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  const int signal_fd = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);

  eep::worker::WorkerDaemon daemon(config);
  const int code = daemon.run(signal_fd);
  close(signal_fd);
  return code;
}
