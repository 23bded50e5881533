#include "eep/common/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>

extern char** environ;

namespace eep {
namespace {

constexpr unsigned kCloseRangeCloexec = 1U << 2;  // CLOSE_RANGE_CLOEXEC of <linux/close_range.h>

int pidfd_open(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

std::vector<std::string> merged_environment(const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string line = *entry;
    auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string key = line.substr(0, eq);
    // The service manager's notification socket and watchdog belong to the process it started
    // (service_notifier.h): a child that inherited them would tell systemd that the unit is
    // ready, or keep a hung parent's watchdog fed.
    if (key == "NOTIFY_SOCKET" || key == "WATCHDOG_USEC" || key == "WATCHDOG_PID") continue;
    env[key] = line.substr(eq + 1);
  }
  for (const auto& [key, value] : extra) env[key] = value;  // may set those on purpose (tests)
  std::vector<std::string> lines;
  for (const auto& [key, value] : env) lines.push_back(key + "=" + value);
  return lines;
}

std::vector<char*> as_c_strings(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (auto& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

}  // namespace

std::optional<std::string> find_in_path(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    return ::access(name.c_str(), X_OK) == 0 ? std::optional(name) : std::nullopt;
  }
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(start, end - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return std::nullopt;
}

Result<ChildProcess> ChildProcess::spawn(const std::vector<std::string>& argv,
                                         const SpawnOptions& options) {
  if (argv.empty()) return error(ErrorCode::kInvalidArgument, "spawn: empty command line");
  // Everything the child needs is prepared before fork: between fork and exec only
  // async-signal-safe calls are allowed (the parent has threads).
  std::vector<std::string> args = argv;
  if (auto resolved = find_in_path(argv[0])) {
    args[0] = *resolved;
  } else {
    return error(ErrorCode::kNotFound, "cannot run " + argv[0] + ": not found or not executable");
  }
  std::vector<std::string> env = merged_environment(options.env);
  std::vector<char*> c_args = as_c_strings(args);
  std::vector<char*> c_env = as_c_strings(env);
  int log_fd = -1;
  if (!options.log_path.empty()) {
    log_fd = ::open(options.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
      return error(ErrorCode::kIoError,
                   "cannot open log file " + options.log_path + ": " + std::strerror(errno));
    }
  }
  // A pipe closed on exec tells the parent whether exec succeeded.
  int exec_pipe[2];
  if (::pipe2(exec_pipe, O_CLOEXEC) != 0) {
    if (log_fd >= 0) ::close(log_fd);
    return error(ErrorCode::kIoError, std::string("pipe2: ") + std::strerror(errno));
  }
  // Kernels before 5.11 have no close_range: the child then walks every possible descriptor.
  const int max_fd = static_cast<int>(std::min<long>(::sysconf(_SC_OPEN_MAX), 1 << 20));
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    if (log_fd >= 0) ::close(log_fd);
    ::close(exec_pipe[0]);
    ::close(exec_pipe[1]);
    return error(ErrorCode::kResourceExhausted, std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    if (options.die_with_parent) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(127);
    }
    // Undo signal dispositions and masks the parent set for itself.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    if (log_fd >= 0) {
      ::dup2(log_fd, STDOUT_FILENO);
      ::dup2(log_fd, STDERR_FILENO);
    }
    // Only stdio crosses exec. Boost.Asio opens its sockets without O_CLOEXEC, so a worker
    // spawned by the coordinator held the HTTP listener and any client connection open at that
    // moment (the client would then see no EOF until the worker exited). Close-on-exec rather
    // than closed, so exec_pipe[1] still reports a failed exec.
    if (::syscall(SYS_close_range, 3U, ~0U, kCloseRangeCloexec) != 0) {
      for (int fd = 3; fd < max_fd; ++fd) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    ::execve(c_args[0], c_args.data(), c_env.data());
    int err = errno;
    ssize_t ignored = ::write(exec_pipe[1], &err, sizeof(err));
    (void)ignored;
    ::_exit(127);
  }
  if (log_fd >= 0) ::close(log_fd);
  ::close(exec_pipe[1]);
  int exec_errno = 0;
  ssize_t n;
  do {
    n = ::read(exec_pipe[0], &exec_errno, sizeof(exec_errno));
  } while (n < 0 && errno == EINTR);
  ::close(exec_pipe[0]);
  ChildProcess child;
  child.pid_ = pid;
  if (n == sizeof(exec_errno)) {
    child.wait_for(std::chrono::milliseconds(1000));
    return error(ErrorCode::kNotFound, "cannot run " + argv[0] + ": " + std::strerror(exec_errno));
  }
  child.pidfd_ = pidfd_open(pid);
  return child;
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept {
  *this = std::move(other);
}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    if (valid() && running()) stop(kDefaultGrace);
    reset();
    pid_ = other.pid_;
    pidfd_ = other.pidfd_;
    wait_status_ = other.wait_status_;
    other.pid_ = -1;
    other.pidfd_ = -1;
    other.wait_status_.reset();
  }
  return *this;
}

ChildProcess::~ChildProcess() {
  if (valid() && running()) stop(kDefaultGrace);
  reset();
}

void ChildProcess::reset() {
  if (pidfd_ >= 0) ::close(pidfd_);
  pidfd_ = -1;
}

bool ChildProcess::running() {
  if (!valid() || wait_status_) return false;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    wait_status_ = status;
    return false;
  }
  if (r < 0 && errno == ECHILD) {  // reaped elsewhere
    wait_status_ = 0;
    return false;
  }
  return true;
}

std::string ChildProcess::describe_exit() const {
  if (!wait_status_) return "running";
  int status = *wait_status_;
  if (WIFEXITED(status)) return "exited with " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           ::strsignal(WTERMSIG(status)) + ")";
  }
  return "ended with wait status " + std::to_string(status);
}

void ChildProcess::signal(int signo) {
  if (valid() && !wait_status_) ::kill(pid_, signo);
}

bool ChildProcess::wait_for(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    if (pidfd_ >= 0) {
      pollfd item{pidfd_, POLLIN, 0};
      ::poll(&item, 1, static_cast<int>(std::min<int64_t>(left.count(), 100)));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  return true;
}

int ChildProcess::stop(std::chrono::milliseconds grace) {
  if (!valid()) return 0;
  if (running()) {
    signal(SIGTERM);
    if (!wait_for(grace)) {
      signal(SIGKILL);
      wait_for(std::chrono::milliseconds(5000));
    }
  }
  return wait_status_.value_or(0);
}

}  // namespace eep
