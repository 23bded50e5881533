// The engine of a serving rank (DESIGN.md section 5): the model, its KV cache and scheduler, and
// the process groups of the current generation. The daemon's loop feeds it requests and calls
// step(); step() keeps every rank of the generation in lockstep:
//   1. a small all-reduce (max) on the control group of [has work, wake epoch, next generation
//      not ready]: everybody learns whether anyone has work, the newest wake epoch seen, and
//      whether every rank has built the next generation;
//   2. when nobody has work the fleet goes idle at that epoch (the daemon then waits for a wake
//      above it); when every rank has built generation g+1, all switch to it at this same step;
//   3. otherwise the forward step runs (an empty, dummy batch on a rank without work, because the
//      MoE all-to-all is collective), tokens are sampled, the scheduler advances.
// Requests and their KV cache survive a generation switch: attention is local to the rank; only
// the expert placement and the groups change. One thread uses it.
#pragma once

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "eep/common/protocol.h"
#include "eep/common/status.h"
#include "eep/worker/backend.h"
#include "eep/worker/checkpoint.h"
#include "eep/worker/kv_store.h"
#include "eep/worker/process_group.h"
#include "eep/worker/scheduler.h"

namespace eep::worker {

struct EngineOptions {
  std::string model_dir;
  std::string device = "cpu";  // "cpu" or "cuda"
  int device_idx = 0;          // the GPU of a cuda rank
  int num_kv_blocks = 1024;    // cpu; cuda sizes its cache from gpu_memory_utilization
  double gpu_memory_utilization = 0.9;
  bool cuda_graphs = true;
  int block_size = 16;
  int max_num_seqs = 256;
  int max_num_batched_tokens = 2048;
  int slots_per_rank = 0;               // 0: the fewest that hold every expert once
  std::string bind_host = "127.0.0.1";  // where rank 0 serves the stores and Gloo binds
  std::chrono::milliseconds group_timeout{30000};
};

struct StepResult {
  bool idle = false;  // nobody had work: wait for a wake above idle_epoch
  uint64_t idle_epoch = 0;
  bool switched = false;  // this step moved to the next generation
  std::vector<protocol::RequestOutput> outputs;
};

class EngineCore {
 public:
  // Opens and validates the checkpoint; weights are loaded per generation.
  static Result<std::unique_ptr<EngineCore>> create(const EngineOptions& options);
  ~EngineCore();

  protocol::ModelCapacity capacity() const;
  protocol::WorkerLoad load() const;
  // The generation this rank steps in (-1 before the first).
  int64_t generation() const { return current_ ? current_->assign.generation : -1; }
  bool serving() const { return current_ != nullptr; }

  // Starts building generation `assign` (stores, groups, weights) on a helper thread. A newer
  // assignment replaces one still being built.
  Status begin_generation(const protocol::Assign& assign);
  // The next generation is built and waits for the others (or failed: the error).
  Result<bool> next_generation_built();
  // The generation this rank is not part of any more (scale down): it stops stepping.
  bool retired() const { return retired_; }

  // Adds a request; a refused one comes back at once as a finished output with the error.
  std::optional<protocol::RequestOutput> submit(const protocol::SubmitRequest& request);
  // Drops a request and frees its KV blocks; its final "cancelled" output, or nullopt if unknown.
  std::optional<protocol::RequestOutput> cancel(uint64_t request_id);
  bool has_work() const { return scheduler_ && scheduler_->has_work(); }

  // One lockstep iteration (see the header comment). `wake_epoch` is the newest wake seen.
  Result<StepResult> step(uint64_t wake_epoch);

 private:
  struct Generation {
    protocol::Assign assign;
    std::unique_ptr<StoreServer> control_store;  // rank 0 only
    std::unique_ptr<StoreServer> ep_store;
    std::unique_ptr<ProcessGroup> control_group;  // null when world_size == 1
    std::unique_ptr<ProcessGroup> ep_group;
    std::unique_ptr<GenerationState> state;  // this rank's weights and exchange on the device
    Placement placement;
    int num_kv_blocks = 0;  // set by the first generation a rank builds
  };
  EngineCore(EngineOptions options, Checkpoint checkpoint, std::unique_ptr<Backend> backend);
  Result<std::unique_ptr<Generation>> build_generation(const protocol::Assign& assign,
                                                       std::unique_ptr<StoreServer> control_store,
                                                       std::unique_ptr<StoreServer> ep_store,
                                                       bool first);
  Status switch_to(std::unique_ptr<Generation> next);

  EngineOptions options_;
  Checkpoint checkpoint_;
  std::unique_ptr<Backend> backend_;
  // Created with the first generation (the CUDA backend sizes the cache after its weights).
  std::unique_ptr<KvBlockManager> blocks_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<Generation> current_;
  std::future<Result<std::unique_ptr<Generation>>> building_;
  std::unique_ptr<Generation> built_;  // built, waiting for every rank to have built it
  bool retired_ = false;
  uint64_t step_count_ = 0;
};

}  // namespace eep::worker
