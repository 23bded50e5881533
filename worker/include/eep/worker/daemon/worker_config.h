// Everything an eep-worker is configured with, and the CLI11 options that fill it.
#pragma once

#include <string>

#include "eep/common/client_keys.h"
#include "eep/worker/engine/engine_core.h"

namespace CLI {
class App;
}  // namespace CLI

namespace eep::worker {

struct WorkerConfig {
  std::string coordinator_endpoint = "tcp://127.0.0.1:5711";
  std::string worker_id;  // default: <host>-<pid>
  // The address this worker advertises and binds (stores, Gloo, weight transfer); ranks with
  // the same one share a host. Default: this machine's address on the route to the coordinator.
  std::string host;
  std::string fleet_token_file;
  ClientKeyOptions keys;  // CURVE on the control socket: the worker key and coordinator.pub
  int register_timeout_ms = 30000;  // give up (exit 1) when the coordinator never answers
  std::string log_level = "info";
  // Serving (when engine.model_dir is set): the engine's options, which hold the backend's.
  EngineOptions engine;
  int cpu_threads = 1;  // GEMM threads of the CPU backend; several ranks often share a host
  // Test hook (off by default): wait this long before registering, as a slow device would.
  int test_register_delay_ms = 0;
};

void add_worker_options(CLI::App& app, WorkerConfig& config);

}  // namespace eep::worker
