// Everything the coordinator is configured with, and the CLI11 options that fill it.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace CLI {
class App;
}  // namespace CLI

namespace eep::coordinator {

struct CoordinatorConfig {
  std::string admin_endpoint = "tcp://127.0.0.1:5710";
  std::string control_endpoint = "tcp://127.0.0.1:5711";
  std::string http_address = "127.0.0.1:8000";
  std::string admin_token_file;  // when set, admin requests must carry this token
  std::string fleet_token_file;  // when set, workers must present this token to register
  // CURVE on the control and admin sockets (docs/security.md): the fleet's keys directory
  // (default: default_keys_dir()); made at the first start when it has no coordinator.key.
  std::string keys_dir;
  bool insecure_plaintext = false;  // no CURVE; refused unless both sockets are on loopback
  std::string launcher = "local";   // local | systemd | none
  int initial_dp = 2;
  std::string device = "cpu";  // cpu | cuda
  std::string model_dir;
  std::string worker_binary;   // local launcher; default: eep-worker beside eep-coordinator
  std::string worker_log_dir;  // local launcher: one log per worker; empty: inherit stderr
  std::vector<std::string> worker_args;      // extra arguments for launched workers
  std::string systemd_unit = "eep-worker@";  // systemd launcher: unit template prefix
  int max_workers = 64;
  std::vector<std::string> port_ranges = {"29500-29999"};
  int heartbeat_timeout_ms = 3000;
  int scale_timeout_ms = 60000;
  // A scale-down waits this long (once g+1 is built) for the requests on the leaving ranks to
  // finish, then switches and migrates the rest (docs/scaling.md, DRAIN_LEAVING).
  int scale_drain_timeout_ms = 5000;
  // "peers": a scale's new generation takes its weights from the serving ranks (the Assign names
  // them, docs/weight_transfer.md); "checkpoint": every member reads the checkpoint.
  std::string scale_weights_from = "peers";
  int stats_log_interval_ms = 5000;  // the throughput log line
  std::string api_key;               // when set, /v1/* needs "Authorization: Bearer <key>"
  std::string served_model_name;     // default: the model directory's name
  int64_t max_in_flight = 4096;      // accepted requests not yet finished, beyond which 429
  // Dispatch on capacity (docs/serving.md): requests a rank holds beyond its --max-num-seqs
  // (-1: a quarter of it, at least 2); running requests move to new ranks after a scale-up
  // when at least move_min_remaining tokens remain.
  int worker_queue_depth = -1;
  bool move_running = true;
  int move_min_remaining = 32;
  int max_connections = 10000;  // open HTTP connections at most, beyond which 503 + Retry-After
  // Returning to the target size after a loss or a failed scale (docs/fault_tolerance.md): at
  // most this many failed scales within the window, then the coordinator gives up until an
  // operator scales.
  int max_restarts = 5;
  int restart_window_s = 300;
  // With no worker to serve (every one lost, or none ready yet) requests wait this long, from the
  // moment the last worker went, for the fleet the coordinator forms again; 0: they fail at once.
  int request_hold_s = 30;
  std::string log_level = "info";
  // Expert load balancing (docs/eplb.md). The placement needs --model (its config.json).
  bool enable_eplb = false;              // rebalance automatically; off: only measure
  int64_t eplb_window_size = 1000;       // steps of expert load the window keeps
  int64_t eplb_step_interval = 3000;     // steps between two automatic rebalance checks
  int num_redundant_experts = 0;         // extra expert slots per layer, over all ranks
  int eplb_layers_per_step = 4;          // layers whose experts move per step boundary
  double eplb_min_gain = 0.01;           // automatic plans predicting less gain are not sent
  double eplb_balance_slack = 0.01;      // balancedness a plan may give up to move less
  double eplb_max_moved_fraction = 1.0;  // of a layer's slots a plan may change
  int eplb_planner_threads = 0;          // 0 = one per core
  // Expert groups (DeepSeek's n_group; Qwen3-MoE has none: 1). Plans are hierarchical over the
  // fleet's hosts when this is a multiple of their number (docs/hosts.md).
  int eplb_num_groups = 1;
  std::string eplb_test_load;  // tests: a large shape planned beside the real one
  // Written once the sockets are bound: {"admin", "control", "pid"} with the real endpoints (so
  // scripts and tests can bind port 0 and still find us).
  std::string ready_file;
};

void add_coordinator_options(CLI::App& app, CoordinatorConfig& config);

}  // namespace eep::coordinator
