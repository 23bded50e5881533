#include "eep/worker/daemon/worker_config.h"

#include <CLI/CLI.hpp>

namespace eep::worker {

void add_worker_options(CLI::App& app, WorkerConfig& config) {
  app.add_option("--coordinator", config.coordinator_endpoint, "Coordinator control endpoint")
      ->capture_default_str();
  app.add_option("--worker-id", config.worker_id, "Unique id of this worker (default HOST-PID)");
  app.add_option("--host", config.host,
                 "Address (or a name that resolves to it) this worker advertises and binds for "
                 "its stores, Gloo and weight transfer; workers with the same one share a host "
                 "(default: this machine's address on the route to --coordinator)");
  BackendOptions& backend = config.engine.backend;
  app.add_option("--device", backend.device, "cpu or cuda")
      ->transform(CLI::CheckedTransformer(device_by_name()))
      ->option_text("cpu|cuda (default cpu)");
  app.add_option("--device-idx", backend.device_idx, "GPU index (cuda) or an informative index")
      ->check(CLI::Range(0, 1023))
      ->capture_default_str();
  app.add_option("--model", config.engine.model_dir, "Model checkpoint directory");
  app.add_option("--fleet-token-file", config.fleet_token_file,
                 "File holding the fleet token to present when registering");
  add_client_key_options(app, config.keys, "worker");
  app.add_option("--register-timeout-ms", config.register_timeout_ms,
                 "Exit when the coordinator has not accepted us within this time")
      ->check(CLI::Range(100, 3600000))
      ->capture_default_str();
  app.add_option("--test-register-delay-ms", config.test_register_delay_ms,
                 "Test hook: wait this long before registering (simulates a slow start)")
      ->check(CLI::Range(0, 600000))
      ->group("Test hooks");
  app.add_option("--kv-blocks", backend.num_kv_blocks, "KV cache blocks (CPU backend)")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  app.add_option("--gpu-memory-utilization", backend.gpu_memory_utilization,
                 "cuda: share of the GPU's memory for weights, buffers and KV cache; the KV "
                 "cache gets what the rest leaves")
      ->check(CLI::Range(0.05, 0.99))
      ->capture_default_str();
  app.add_flag("!--no-cuda-graphs", backend.cuda_graphs,
               "cuda: run decode steps eagerly instead of from captured CUDA graphs");
  app.add_option("--moe-combine", backend.moe_combine,
                 "cuda: how expert outputs come back to their token: exact (each output, summed "
                 "in router order: the same bits at any placement, so EPLB and scaling keep "
                 "greedy outputs) or rank-partials (one fp32 sum per rank: less traffic)")
      ->transform(CLI::CheckedTransformer(moe_combine_by_name()))
      ->option_text("exact|rank-partials (default exact)");
  app.add_flag("--batch-invariant", backend.batch_invariant,
               "cuda: a request's tokens do not depend on what it is batched with (dense products "
               "in a fixed order instead of cuBLAS, attention without position splits), "
               "so that with --moe-combine exact scaling and EPLB keep greedy outputs");
  app.add_option("--block-size", backend.block_size, "Positions per KV cache block")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--max-num-seqs", backend.max_num_seqs, "Running requests per rank at most")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  app.add_option("--max-num-batched-tokens", backend.max_num_batched_tokens,
                 "Tokens per forward step at most (chunked prefill)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("--slots-per-rank", config.engine.slots_per_rank,
                 "Physical expert slots per rank (0: the fewest that hold every expert once)")
      ->check(CLI::Range(0, 1 << 16));
  app.add_option_function<int>(
         "--weight-transfer-chunk-kb",
         [&config](int kb) { config.engine.weight_transfer_chunk_bytes = size_t{1024} * kb; },
         "At a scale, the most weight bytes (KiB) a serving rank sends and copies for the next "
         "generation between two of its steps (default 65536)")
      ->check(CLI::Range(1, 1 << 24));
  app.add_option_function<double>(
         "--log-step-times-s",
         [&config](double seconds) {
           config.engine.step_times_interval =
               std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
         },
         "Every this many seconds, log where the forward steps' time went, in ms per step "
         "(schedule, vote, prepare, forward, update, between steps; docs/profiling.md); 0: "
         "never (default)")
      ->check(CLI::Range(0.0, 86400.0));
  app.add_option_function<int>(
         "--group-timeout-ms",
         [&backend](int ms) { backend.group_timeout = std::chrono::milliseconds(ms); },
         "Every rank of a new generation must join its groups within this; past it the "
         "generation's build fails and rolls back (default " +
             std::to_string(kDefaultGroupTimeout.count()) + ")")
      ->check(CLI::Range(100, 3600000));
  app.add_option_function<int>(
         "--collective-timeout-ms",
         [&backend](int ms) { backend.collective_timeout = std::chrono::milliseconds(ms); },
         "Every collective of a built generation must finish within this; past it (a peer died "
         "or hangs) this rank abandons the generation, keeps its requests and waits for the "
         "coordinator's recovery (default " +
             std::to_string(kDefaultCollectiveTimeout.count()) + ")")
      ->check(CLI::Range(100, 3600000));
  app.add_option("--cpu-threads", config.cpu_threads,
                 "Threads per GEMM on the CPU backend (ranks on one host share its cores)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--log-level", config.log_level, "debug, info, warn or error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
      ->capture_default_str();
}

}  // namespace eep::worker
