// Everything an eep-worker is configured with, and the CLI11 options that fill it.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "eep/worker/moe_combine.h"

namespace eep::worker {

struct WorkerConfig {
  std::string coordinator_endpoint = "tcp://127.0.0.1:5711";
  std::string worker_id;  // default: <host>-<pid>
  std::string host;       // advertised host; default: gethostname()
  std::string device = "cpu";
  int device_idx = 0;
  std::string model_dir;
  std::string fleet_token_file;
  int register_timeout_ms = 30000;  // give up (exit 1) when the coordinator never answers
  std::string log_level = "info";
  // Serving (when model_dir is set).
  int num_kv_blocks = 1024;                     // cpu
  double gpu_memory_utilization = 0.9;          // cuda: share of the GPU's memory this rank may use
  bool cuda_graphs = true;                      // cuda: replay decode steps from captured graphs
  MoeCombine moe_combine = MoeCombine::kExact;  // cuda: how expert outputs come back
  bool batch_invariant = false;  // cuda: a request's results independent of its batch
  int block_size = 16;
  int max_num_seqs = 256;
  int max_num_batched_tokens = 2048;
  int slots_per_rank = 0;  // 0: the fewest that hold every expert once
  int cpu_threads = 1;     // GEMM threads of the CPU backend; several ranks often share a host
  int weight_transfer_chunk_kb = 64 * 1024;  // a scale's weight transfer, per step boundary
  // Test hook (off by default): wait this long before registering, as a slow device would.
  int test_register_delay_ms = 0;
};

void add_worker_options(CLI::App& app, WorkerConfig& config);

}  // namespace eep::worker
