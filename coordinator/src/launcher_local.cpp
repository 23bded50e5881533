// The local launcher: eep-worker processes on this host, children of the coordinator.
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <filesystem>
#include <map>

#include "eep/common/log.h"
#include "eep/common/subprocess.h"
#include "eep/coordinator/launcher.h"
#include "launcher_internal.h"

namespace eep::coordinator {
namespace {

constexpr const char* kLocalHost = "127.0.0.1";
// A worker told to stop gets this long to exit on its own before SIGKILL.
constexpr std::chrono::milliseconds kStopGrace{3000};

class LocalLauncher final : public Launcher {
 public:
  LocalLauncher(const CoordinatorConfig& config, std::string worker_binary,
                std::string control_endpoint)
      : config_(config),
        worker_binary_(std::move(worker_binary)),
        control_endpoint_(std::move(control_endpoint)) {}

  ~LocalLauncher() override { stop_all(); }

  std::string_view name() const override { return "local"; }
  int max_workers() const override { return config_.max_workers; }

  Status launch(const std::string& worker_id, int device_idx) override {
    if (static_cast<int>(children_.size()) >= config_.max_workers) {
      return error(ErrorCode::kResourceExhausted,
                   "the local launcher already runs " + std::to_string(children_.size()) +
                       " workers (--max-workers " + std::to_string(config_.max_workers) + ")");
    }
    std::vector<std::string> argv = {worker_binary_, "--coordinator", control_endpoint_,
                                     "--worker-id", worker_id, "--device", config_.device,
                                     "--device-idx", std::to_string(device_idx), "--log-level",
                                     config_.log_level,
                                     // Local workers serve their stores and Gloo on loopback.
                                     "--host", kLocalHost};
    if (!config_.model_dir.empty()) argv.insert(argv.end(), {"--model", config_.model_dir});
    if (!config_.fleet_token_file.empty()) {
      argv.insert(argv.end(), {"--fleet-token-file", config_.fleet_token_file});
    }
    // The workers launched here connect with the fleet's worker key, from the same directory.
    if (config_.insecure_plaintext) {
      argv.push_back("--insecure-plaintext");
    } else if (!config_.keys_dir.empty()) {
      argv.insert(argv.end(), {"--keys-dir", config_.keys_dir});
    }
    argv.insert(argv.end(), config_.worker_args.begin(), config_.worker_args.end());
    SpawnOptions options;
    if (!config_.worker_log_dir.empty()) {
      options.log_path = config_.worker_log_dir + "/" + worker_id + ".log";
    }
    auto child = ChildProcess::spawn(argv, options);
    if (!child.is_ok()) return child.status();
    EEP_LOG_INFO("launched worker " << worker_id << " (pid " << child->pid() << ", device "
                                    << config_.device << ":" << device_idx << ")");
    children_.emplace(worker_id, std::move(child).value());
    return Status::ok();
  }

  void stop(const std::string& worker_id, bool force) override {
    auto it = children_.find(worker_id);
    if (it == children_.end()) return;
    if (force) {
      it->second.signal(SIGKILL);
    } else {
      it->second.signal(SIGTERM);
      stop_deadlines_[worker_id] = std::chrono::steady_clock::now() + kStopGrace;
    }
  }

  std::vector<int> watch_fds() const override {
    std::vector<int> fds;
    for (const auto& [id, child] : children_) {
      if (child.pidfd() >= 0) fds.push_back(child.pidfd());
    }
    return fds;
  }

  std::vector<LaunchedExit> reap() override {
    std::vector<LaunchedExit> exits;
    const auto now = std::chrono::steady_clock::now();
    for (auto it = children_.begin(); it != children_.end();) {
      auto& [id, child] = *it;
      if (child.running()) {
        auto deadline = stop_deadlines_.find(id);
        if (deadline != stop_deadlines_.end() && now > deadline->second) {
          EEP_LOG_WARN("worker " << id << " (pid " << child.pid()
                                 << ") ignored SIGTERM; sending SIGKILL");
          child.signal(SIGKILL);
          stop_deadlines_.erase(deadline);
        }
        ++it;
        continue;
      }
      const int status = child.wait_status().value_or(0);
      exits.push_back(LaunchedExit{id, child.describe_exit(),
                                   WIFEXITED(status) && WEXITSTATUS(status) == 0, false});
      stop_deadlines_.erase(id);
      it = children_.erase(it);
    }
    return exits;
  }

  void stop_all() override {
    for (auto& [id, child] : children_) child.signal(SIGTERM);
    for (auto& [id, child] : children_) child.stop(kStopGrace);
    children_.clear();
  }

  std::vector<std::string> live_workers() const override {
    std::vector<std::string> ids;
    for (const auto& [id, child] : children_) ids.push_back(id);
    return ids;
  }

 private:
  const CoordinatorConfig& config_;
  std::string worker_binary_;
  std::string control_endpoint_;
  std::map<std::string, ChildProcess> children_;
  std::map<std::string, std::chrono::steady_clock::time_point> stop_deadlines_;
};

}  // namespace

std::unique_ptr<Launcher> make_local_launcher(const CoordinatorConfig& config,
                                              std::string worker_binary,
                                              std::string control_endpoint) {
  return std::make_unique<LocalLauncher>(config, std::move(worker_binary),
                                         std::move(control_endpoint));
}

}  // namespace eep::coordinator
