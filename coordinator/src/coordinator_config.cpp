#include "eep/coordinator/coordinator_config.h"

#include <CLI/CLI.hpp>

#include "eep/common/fleet_keys.h"

namespace eep::coordinator {

void add_coordinator_options(CLI::App& app, CoordinatorConfig& config) {
  app.add_option("--admin", config.admin_endpoint, "Admin socket (ZeroMQ endpoint)")
      ->capture_default_str();
  app.add_option("--control", config.control_endpoint, "Control socket for workers")
      ->capture_default_str();
  app.add_option("--http", config.http_address,
                 "HTTP API address HOST:PORT (port 0: any free port; \"off\": no HTTP API)")
      ->capture_default_str();
  app.add_option("--api-key", config.api_key,
                 "Require \"Authorization: Bearer KEY\" on /v1/* (prefer EEP_API_KEY)");
  app.add_option("--admin-token-file", config.admin_token_file,
                 "File holding a token every admin request must carry (beside the admin key)");
  app.add_option("--fleet-token-file", config.fleet_token_file,
                 "File holding the token workers must present to register");
  app.add_option("--keys-dir", config.keys_dir,
                 "The fleet's CURVE keys (docs/security.md): coordinator.key, authorized_keys; "
                 "made here at the first start when it has no coordinator.key (default " +
                     default_keys_dir() + ")")
      ->group("Security");
  app.add_flag("--insecure-plaintext", config.insecure_plaintext,
               "Control and admin sockets without CURVE authentication and encryption; refused "
               "unless both are on loopback")
      ->group("Security");
  app.add_option("--launcher", config.launcher, "How workers are started")
      ->check(CLI::IsMember({"local", "systemd", "none"}))
      ->capture_default_str();
  app.add_option("--dp", config.initial_dp, "Initial number of active workers (DP = EP ranks)")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  app.add_option("--device", config.device, "Worker device")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--model", config.model_dir, "Model checkpoint directory");
  app.add_option("--worker-binary", config.worker_binary,
                 "eep-worker to launch (local launcher); default: beside eep-coordinator");
  app.add_option("--worker-log-dir", config.worker_log_dir,
                 "Directory for the logs of locally launched workers (default: our stderr)");
  app.add_option("--worker-arg", config.worker_args,
                 "Extra argument passed to every launched worker (repeatable)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--systemd-unit", config.systemd_unit,
                 "Unit template prefix for the systemd launcher (instance = worker index)")
      ->capture_default_str();
  app.add_option("--max-workers", config.max_workers, "Most workers the launcher may run at once")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--port-range", config.port_ranges,
                 "Store ports: FIRST-LAST for any host or HOST=FIRST-LAST (repeatable)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->capture_default_str();
  app.add_option("--heartbeat-timeout-ms", config.heartbeat_timeout_ms,
                 "A worker not heard from for this long is DEAD")
      ->check(CLI::Range(100, 600000))
      ->capture_default_str();
  app.add_option("--scale-timeout-ms", config.scale_timeout_ms,
                 "A scale not finished in this time rolls back")
      ->check(CLI::Range(100, 3600000))
      ->capture_default_str();
  app.add_option(
         "--max-restarts", config.max_restarts,
         "After a lost worker or a failed scale the fleet returns to its target size (--dp, "
         "then the last scale), relaunching workers with backoff; after this many failed "
         "scales within --restart-window-s it stops trying and says so in status")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--restart-window-s", config.restart_window_s,
                 "The window in which --max-restarts failed scales make the coordinator give up")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  app.add_option("--request-hold-s", config.request_hold_s,
                 "With no worker to serve (every one lost, or none ready yet), requests wait "
                 "this long from the moment the last worker went for the fleet to form again, "
                 "then fail with 503 (0: at once; also at once once the coordinator gave up)")
      ->check(CLI::Range(0, 3600))
      ->capture_default_str();
  app.add_option("--scale-drain-timeout-ms", config.scale_drain_timeout_ms,
                 "A scale-down lets requests on the leaving ranks finish for this long, then "
                 "migrates the rest to the staying ranks (0: migrate at once)")
      ->check(CLI::Range(0, 3600000))
      ->capture_default_str();
  app.add_option("--scale-weights-from", config.scale_weights_from,
                 "Where a scale's new generation takes its weights: the serving ranks (peers) "
                 "or each worker's checkpoint")
      ->check(CLI::IsMember({"peers", "checkpoint"}))
      ->capture_default_str();
  app.add_option("--stats-log-interval-ms", config.stats_log_interval_ms,
                 "How often the throughput line is logged (not while idle)")
      ->check(CLI::Range(100, 3600000))
      ->capture_default_str();
  app.add_option("--served-model-name", config.served_model_name,
                 "Model id of the API (default: the model directory's name)");
  app.add_option("--max-in-flight", config.max_in_flight,
                 "Requests accepted and not finished at most (then 429)")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  app.add_option("--worker-queue-depth", config.worker_queue_depth,
                 "Requests a rank is sent beyond its --max-num-seqs; the rest wait in the "
                 "coordinator until a rank has room (-1: max(2, max-num-seqs / 4))")
      ->check(CLI::Range(-1, 1 << 20))
      ->capture_default_str();
  app.add_option("--move-running", config.move_running,
                 "After a scale-up, move running requests from full ranks to the new ones when "
                 "enough of them remains (docs/serving.md)")
      ->capture_default_str();
  app.add_option("--move-min-remaining", config.move_min_remaining,
                 "A running request moves only with at least this many tokens left to generate")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  app.add_option("--max-connections", config.max_connections,
                 "Open HTTP connections at most, idle ones included (then 503 with Retry-After); "
                 "the coordinator raises its open-file limit to fit them where it may")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("--ready-file", config.ready_file,
                 "Write {admin, control, pid} as JSON here once the sockets are bound");
  app.add_flag("--enable-eplb", config.enable_eplb,
               "Rebalance the expert placement from the measured load (EPLB; needs --model)");
  app.add_option("--eplb-window-size", config.eplb_window_size,
                 "Steps of expert load the EPLB window keeps")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--eplb-step-interval", config.eplb_step_interval,
                 "Steps (of rank 0) between two automatic EPLB checks")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--num-redundant-experts", config.num_redundant_experts,
                 "Extra expert slots per layer over all ranks (slots per rank = ceil((experts + "
                 "redundant) / ranks))")
      ->check(CLI::Range(0, 1 << 16))
      ->capture_default_str();
  app.add_option("--eplb-layers-per-step", config.eplb_layers_per_step,
                 "Layers whose experts move per step boundary during a rebalance")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--eplb-min-gain", config.eplb_min_gain,
                 "An automatic EPLB plan is sent only when it predicts at least this much more "
                 "balancedness than the window measures")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--eplb-balance-slack", config.eplb_balance_slack,
                 "Balancedness per layer an EPLB plan may give up against a plan from scratch to "
                 "move fewer experts (0: as balanced as from scratch)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--eplb-max-moved-fraction", config.eplb_max_moved_fraction,
                 "At most this fraction of a layer's expert slots change per EPLB plan (1: no cap)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--eplb-planner-threads", config.eplb_planner_threads,
                 "Threads that compute EPLB plans, off the event loop (0: one per core)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  app.add_option("--eplb-num-groups", config.eplb_num_groups,
                 "Expert groups of the model (consecutive ids; 1: none). When a multiple of the "
                 "fleet's hosts, EPLB plans hierarchically: whole groups per host, replicas within "
                 "their host")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  app.add_option("--eplb-test-load", config.eplb_test_load,
                 "Testing: also plan the first case of this cases.json-format file at every EPLB "
                 "plan (its result is dropped), to measure a large plan on a small fleet");
  app.add_option("--log-level", config.log_level, "debug, info, warn or error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
      ->capture_default_str();
}

}  // namespace eep::coordinator
