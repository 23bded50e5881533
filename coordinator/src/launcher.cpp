#include "eep/coordinator/launcher.h"

#include <filesystem>

#include "launcher_internal.h"

namespace eep::coordinator {
namespace {

// Workers connect to where the coordinator listens; a wildcard bind is reached over loopback.
std::string connectable(const std::string& bound_endpoint) {
  std::string endpoint = bound_endpoint;
  for (const std::string wildcard : {"tcp://*:", "tcp://0.0.0.0:"}) {
    if (endpoint.rfind(wildcard, 0) == 0) {
      endpoint = "tcp://127.0.0.1:" + endpoint.substr(wildcard.size());
    }
  }
  return endpoint;
}

}  // namespace

Result<std::unique_ptr<Launcher>> make_launcher(const CoordinatorConfig& config,
                                                const std::string& control_endpoint,
                                                const std::string& coordinator_binary) {
  if (config.launcher == "none") return make_none_launcher();
  if (config.launcher == "systemd") return make_systemd_launcher(config);
  if (config.launcher != "local") {
    return error(ErrorCode::kInvalidArgument, "unknown launcher '" + config.launcher + "'");
  }
  std::string binary = config.worker_binary;
  if (binary.empty()) {
    std::error_code ec;
    auto self = std::filesystem::canonical(coordinator_binary, ec);
    if (ec) self = std::filesystem::canonical("/proc/self/exe", ec);
    binary = (self.parent_path() / "eep-worker").string();
  }
  if (!std::filesystem::exists(binary)) {
    return error(ErrorCode::kNotFound,
                 "worker binary " + binary + " does not exist; pass --worker-binary PATH");
  }
  return make_local_launcher(config, binary, connectable(control_endpoint));
}

}  // namespace eep::coordinator
