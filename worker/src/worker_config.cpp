#include "eep/worker/worker_config.h"

namespace eep::worker {

void add_worker_options(CLI::App& app, WorkerConfig& config) {
  app.add_option("--coordinator", config.coordinator_endpoint, "Coordinator control endpoint")
      ->capture_default_str();
  app.add_option("--worker-id", config.worker_id, "Unique id of this worker (default HOST-PID)");
  app.add_option("--host", config.host, "Host name this worker reports (default: gethostname)");
  app.add_option("--device", config.device, "cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--device-idx", config.device_idx, "GPU index (cuda) or an informative index")
      ->check(CLI::Range(0, 1023))
      ->capture_default_str();
  app.add_option("--model", config.model_dir, "Model checkpoint directory");
  app.add_option("--fleet-token-file", config.fleet_token_file,
                 "File holding the fleet token to present when registering");
  app.add_option("--register-timeout-ms", config.register_timeout_ms,
                 "Exit when the coordinator has not accepted us within this time")
      ->check(CLI::Range(100, 3600000))
      ->capture_default_str();
  app.add_option("--test-register-delay-ms", config.test_register_delay_ms,
                 "Test hook: wait this long before registering (simulates a slow start)")
      ->check(CLI::Range(0, 600000))
      ->group("Test hooks");
  app.add_option("--log-level", config.log_level, "debug, info, warn or error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
      ->capture_default_str();
}

}  // namespace eep::worker
