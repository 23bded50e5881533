// The systemd launcher: `systemctl start|stop <unit>N`, where the unit template runs
// `eep-worker --worker-id wN --device-idx N` (config/eep-worker@.service). The worker then
// registers like any other; its death is seen by the heartbeat or its exit notice.
#include <map>
#include <set>

#include <sys/wait.h>
#include <set>

#include "eep/common/log.h"
#include "eep/common/subprocess.h"
#include "eep/coordinator/launcher.h"
#include "launcher_internal.h"

namespace eep::coordinator {
namespace {

class SystemdLauncher final : public Launcher {
 public:
  explicit SystemdLauncher(const CoordinatorConfig& config) : config_(config) {}
  ~SystemdLauncher() override { stop_all(); }

  std::string_view name() const override { return "systemd"; }
  int max_workers() const override { return config_.max_workers; }

  Status launch(const std::string& worker_id, int /*device_idx*/) override {
    // The instance number is the worker index; the unit derives the device index from it.
    if (worker_id.size() < 2 || worker_id[0] != 'w') {
      return error(ErrorCode::kInvalidArgument,
                   "systemd launcher needs worker ids of the form wN, got " + worker_id);
    }
    if (static_cast<int>(started_.size()) >= config_.max_workers) {
      return error(ErrorCode::kResourceExhausted,
                   "the systemd launcher already runs " + std::to_string(started_.size()) +
                       " workers (--max-workers " + std::to_string(config_.max_workers) + ")");
    }
    EEP_RETURN_IF_ERROR(run_systemctl("start", worker_id));
    started_.insert(worker_id);
    return Status::ok();
  }

  void stop(const std::string& worker_id, bool force) override {
    if (started_.erase(worker_id) == 0) return;
    Status status = run_systemctl(force ? "kill" : "stop", worker_id);
    if (!status.is_ok()) EEP_LOG_WARN("cannot stop " << worker_id << ": " << status.to_string());
  }

  std::vector<int> watch_fds() const override {
    std::vector<int> fds;
    for (const auto& [id, pending] : pending_) fds.push_back(pending.process.pidfd());
    return fds;
  }

  std::vector<LaunchedExit> reap() override {
    std::vector<LaunchedExit> exits;
    for (auto it = pending_.begin(); it != pending_.end();) {
      Pending& pending = it->second;
      if (pending.process.running()) {
        ++it;
        continue;
      }
      const int status = pending.process.wait_status().value_or(0);
      const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (!ok) {
        EEP_LOG_ERROR("`" << pending.command << "` " << pending.process.describe_exit());
        if (pending.verb == "start") {
          started_.erase(pending.worker_id);
          exits.push_back(LaunchedExit{
              pending.worker_id, "`" + pending.command + "` " + pending.process.describe_exit(),
              false, true});
        }
      }
      it = pending_.erase(it);
    }
    return exits;
  }

  void stop_all() override {
    for (const std::string& id : std::vector<std::string>(started_.begin(), started_.end())) {
      stop(id, false);
    }
    for (auto& [key, pending] : pending_) pending.process.wait_for(std::chrono::seconds(10));
    pending_.clear();
  }

  std::vector<std::string> live_workers() const override {
    return {started_.begin(), started_.end()};
  }

 private:
  struct Pending {
    std::string worker_id;
    std::string verb;
    std::string command;
    ChildProcess process;
  };

  // systemctl runs as a child so that the event loop never blocks on it.
  Status run_systemctl(const std::string& verb, const std::string& worker_id) {
    const std::string unit = config_.systemd_unit + worker_id.substr(1);
    std::vector<std::string> argv = {"systemctl", verb, unit};
    if (verb == "kill") argv = {"systemctl", "kill", "--signal=SIGKILL", unit};
    SpawnOptions options;
    options.die_with_parent = false;  // a systemctl call should finish even if we die
    auto process = ChildProcess::spawn(argv, options);
    if (!process.is_ok()) {
      return error(process.status().code(), "systemd launcher: " + process.status().message());
    }
    std::string command = "systemctl " + verb + " " + unit;
    EEP_LOG_INFO("ran " << command);
    pending_.emplace(std::to_string(next_pending_++),
                     Pending{worker_id, verb, command, std::move(process).value()});
    return Status::ok();
  }

  const CoordinatorConfig& config_;
  std::set<std::string> started_;
  std::map<std::string, Pending> pending_;
  uint64_t next_pending_ = 0;
};

class NoneLauncher final : public Launcher {
 public:
  std::string_view name() const override { return "none"; }
  int max_workers() const override { return 0; }
  Status launch(const std::string& worker_id, int) override {
    return error(ErrorCode::kResourceExhausted,
                 "launcher 'none' cannot start worker " + worker_id +
                     "; start eep-worker --coordinator <control endpoint> on a host, or run the "
                     "coordinator with --launcher local|systemd");
  }
  void stop(const std::string&, bool) override {}
  std::vector<int> watch_fds() const override { return {}; }
  std::vector<LaunchedExit> reap() override { return {}; }
  void stop_all() override {}
  std::vector<std::string> live_workers() const override { return {}; }
};

}  // namespace

std::unique_ptr<Launcher> make_systemd_launcher(const CoordinatorConfig& config) {
  return std::make_unique<SystemdLauncher>(config);
}

std::unique_ptr<Launcher> make_none_launcher() {
  return std::make_unique<NoneLauncher>();
}

}  // namespace eep::coordinator
