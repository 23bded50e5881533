// eep-worker: one rank of an elastic-ep fleet (DESIGN.md section 1).
#include <signal.h>  // first: defines __GLIBC__ on glibc
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <CLI/CLI.hpp>

#include "eep/common/config.h"
#include "eep/common/log.h"
#include "eep/worker/daemon/worker_daemon.h"

int main(int argc, char** argv) {
#if defined(__GLIBC__)
  // Weights, transfer buffers and caches are large and come and go with every generation. With
  // glibc's dynamic threshold, once one such block is freed the next ones come from the heaps,
  // where freed weights stay as holes: a rank's memory grew by about one generation's weights per
  // scale. A fixed threshold keeps every block of 64 KiB or more in its own mapping, returned to
  // the system when freed (docs/weight_transfer.md, "Memory").
  mallopt(M_MMAP_THRESHOLD, 64 * 1024);
#endif
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

  int code = 0;
  bool register_again = false;
  {
    eep::worker::WorkerDaemon daemon(config);
    code = daemon.run(signal_fd);
    register_again = daemon.register_again();
  }
  close(signal_fd);
  if (register_again) {
    // The same program and command line, as a supervisor would restart it: a new spare with no
    // state of the rank that was declared dead (docs/hosts.md).
    execv("/proc/self/exe", argv);
    EEP_LOG_ERROR("cannot start again: execv: " << std::strerror(errno));
    return 1;
  }
  return code;
}
