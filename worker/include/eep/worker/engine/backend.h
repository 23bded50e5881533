// One model, two devices (DESIGN.md section 5): what the engine needs from a device backend.
// The CPU backend (fp32, Gloo) and the CUDA backend (bf16, NCCL, CUDA graphs) implement it, so
// the scheduler, placement, protocol and state machine are shared.
//
// Threads: create_ep_group() and build() run on the engine's helper thread while the current
// generation serves on the engine thread; everything else runs on the engine thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eep/common/placement.h"
#include "eep/common/protocol.h"
#include "eep/common/status.h"
#include "eep/worker/comm/process_group.h"
#include "eep/worker/comm/process_group_gloo.h"
#include "eep/worker/cpu/model_runner_cpu.h"
#include "eep/worker/elastic/weight_transfer.h"
#include "eep/worker/engine/kv_cache.h"
#include "eep/worker/engine/moe_combine.h"
#include "eep/worker/model/checkpoint.h"

namespace eep::worker {

// What every rank of the step agreed on (the engine's lockstep all-reduce): the most tokens any
// rank runs, and whether every rank runs decode tokens only. Expert-parallel exchanges size their
// per-peer buffers from `capacity`; decode-only steps may replay a captured CUDA graph.
struct StepPlan {
  int64_t capacity = 0;
  bool decode_only = false;
};

// How a chunk's next token is drawn (kernels/sampling.h's procedure), from its request's
// SamplingParams (sampling_spec() in engine/sampling.h).
struct SamplingSpec {
  float temperature = 0.0f;
  float top_p = 1.0f;
  uint64_t seed = 0;
  uint64_t step = 0;  // tokens the sequence generated before this one
  int top_k = 0;      // 0: every token
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  int num_logprobs = -1;  // -1: none; k >= 0: the token's log-probability and the top k
  // The sequence's prompt and the tokens it generated so far, which the penalties read; they view
  // the request's own vectors, valid for the step.
  std::span<const int32_t> prompt_ids;
  std::span<const int32_t> output_ids;

  // Whether it uses more than temperature, top_p and the draw: the CUDA backend's device sampler
  // has only those, and samples such rows on the host (docs/serving.md, "Sampling").
  bool needs_host_sampler() const {
    return top_k != 0 || min_p != 0.0f || repetition_penalty != 1.0f || frequency_penalty != 0.0f ||
           presence_penalty != 0.0f || num_logprobs >= 0;
  }
};

// What forward_sample drew, one entry per chunk with a SamplingSpec, in chunk order: the token,
// and its log-probabilities where the spec asked for them (num_logprobs >= 0), else nullopt.
struct SampledTokens {
  std::vector<int32_t> tokens;
  std::vector<std::optional<protocol::TokenLogprobs>> logprobs;
};

// Runs forward steps of one rank over its KV cache.
class ModelExecutor {
 public:
  virtual ~ModelExecutor() = default;
  virtual const ModelConfig& config() const = 0;
  // Logits of the chunks' rows (host memory), as ModelRunner::forward.
  virtual Result<ForwardOutput> forward(const std::vector<SequenceChunk>& batch,
                                        const KvBlockManager& blocks, const StepPlan& plan) = 0;
  // The step and its sampling: one token for every chunk with a SamplingSpec, in chunk order.
  virtual Result<SampledTokens> forward_sample(
      const std::vector<SequenceChunk>& batch,
      const std::vector<std::optional<SamplingSpec>>& sampling, const KvBlockManager& blocks,
      const StepPlan& plan) = 0;
  // Tokens this rank routed to each physical slot since the last take: [layer][slot] (EPLB).
  virtual std::vector<std::vector<int64_t>> take_slot_counts() = 0;
  // EPLB (DESIGN.md section 8): moves layer `layer_idx` to `new_phy2log` (a row of a placement
  // with this generation's ranks and slots), expert weights peer to peer over `ep_group` (null at
  // one rank) as paired by plan_expert_moves (eep/common/placement.h). A collective: every rank
  // of the group calls it for the same layer between the same two steps. From the next forward
  // on, the layer uses its new placement. Returns the expert weight bytes this rank received
  // from other ranks (copies between its own slots are not counted). Synchronous: the weights
  // are in place when it returns. A bad row or group is kInvalidArgument before anything moves;
  // a failed exchange breaks the group (process_group.h) and may leave the layer half moved, so
  // the generation is rebuilt.
  virtual Result<uint64_t> move_layer_experts(int layer_idx, const std::vector<int>& new_phy2log,
                                              ProcessGroup* ep_group) = 0;
};

// A generation's device state, built on the helper thread: this rank's weights for a placement
// and whatever the device keeps per generation. Opaque to the engine.
class GenerationState {
 public:
  virtual ~GenerationState() = default;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;

  // Helper thread: the generation's expert-parallel group (Gloo on CPU, NCCL on CUDA).
  virtual Result<std::unique_ptr<ProcessGroup>> create_ep_group(const GroupSpec& spec) = 0;
  // Helper thread: this rank's weights for `placement`, and the exchange over `ep_group` (null at
  // one rank; it outlives the state).
  virtual Result<std::unique_ptr<GenerationState>> build(const Checkpoint& checkpoint,
                                                         const Placement& placement, int rank,
                                                         ProcessGroup* ep_group) = 0;
  // Helper thread, once, after the first build: the KV blocks this rank holds for good.
  virtual Result<int> plan_kv_blocks() = 0;
  // Weights from peers at a scale (docs/weight_transfer.md). A backend without it builds every
  // generation from the checkpoint and the methods below are not called.
  virtual bool supports_weight_transfer() const { return false; }
  // The pieces' sizes in bytes, the same on every rank of a model: the non-expert tensors in a
  // fixed order, and one expert slot.
  virtual std::vector<size_t> dense_piece_bytes() const { return {}; }
  virtual size_t expert_piece_bytes() const { return 0; }
  // Helper thread: as build(), but only `from_checkpoint`'s slots are read; every other weight
  // arrives through unpack_piece before the state is installed.
  virtual Result<std::unique_ptr<GenerationState>> build_for_transfer(
      const Checkpoint& checkpoint, const Placement& placement, int rank, ProcessGroup* ep_group,
      const std::vector<CheckpointSlot>& from_checkpoint);
  // Memory of at least `bytes` that pieces are packed into and that the EP groups send from and
  // receive into (host memory on CPU, device memory on CUDA); valid until the next call. One
  // chunk at a time: the engine thread, or the helper thread of a rank that serves nothing.
  virtual Result<std::byte*> transfer_staging(size_t bytes);
  // Engine thread, after the first install: `piece` of the installed weights into `out` (staging
  // memory, the piece's bytes). May complete asynchronously, ordered before the EP groups' next
  // operation and finish_transfer_chunk().
  virtual Status pack_installed_piece(const WeightPiece& piece, std::byte* out);
  // As above, `piece` of `state` (built, not installed) from `in` (staging memory).
  virtual Status unpack_piece(GenerationState& state, const WeightPiece& piece,
                              const std::byte* in);
  // Everything the chunk's pack_installed_piece and unpack_piece calls started has completed.
  virtual Status finish_transfer_chunk() { return Status::ok(); }
  // Engine thread: serve on `state` from now on; the previous generation's state is released.
  virtual Status install(std::unique_ptr<GenerationState> state, int num_kv_blocks) = 0;
  // Engine thread, after the first install.
  virtual ModelExecutor& executor() = 0;
  // Engine thread: the installed generation's groups are destroyed next, without a new install
  // (a lost generation, docs/fault_tolerance.md). Whatever holds their work goes first (the CUDA
  // backend's captured graphs); the weights stay until the next install.
  virtual void release_collectives() {}
};

enum class Device { kCpu, kCuda };
// "cpu", "cuda" (named like moe_combine_name: a to_string() overload would catch CLI11's eye).
const char* device_name(Device device);
// The names of --device, for CLI11's CheckedTransformer.
const std::map<std::string, Device>& device_by_name();

// The backend's configuration; the engine's (EngineOptions) holds it, the worker's holds that.
struct BackendOptions {
  Device device = Device::kCpu;
  int device_idx = 0;        // the GPU (cuda)
  int num_kv_blocks = 1024;  // cpu; cuda sizes its cache from gpu_memory_utilization
  int block_size = 16;
  int max_num_seqs = 256;
  int max_num_batched_tokens = 2048;
  double gpu_memory_utilization = 0.9;
  bool cuda_graphs = true;
  MoeCombine moe_combine = MoeCombine::kExact;  // cuda
  bool batch_invariant = false;                 // cuda: ModelRunnerCuda's option
  std::chrono::milliseconds group_timeout = kDefaultGroupTimeout;
  std::chrono::milliseconds collective_timeout = kDefaultCollectiveTimeout;
};

// One chunk of a weight transfer on this rank (docs/weight_transfer.md): its sends and local
// copies packed into the backend's staging memory, one all_to_all_v over `group` (null when the
// chunk has only local copies), the received and local pieces unpacked into `next` (null on a
// leaving rank, which only sends). Returns the bytes received from peers. A failed exchange
// breaks the group (process_group.h).
Result<uint64_t> run_transfer_chunk(Backend& backend, GenerationState* next,
                                    const ChunkSchedule& schedule, ProcessGroup* group);

// The backend for options.device; kFailedPrecondition for cuda in a build without it.
Result<std::unique_ptr<Backend>> make_backend(const BackendOptions& options,
                                              const ModelConfig& config);

// A one-rank generation (every expert local, no group) built and installed: what eep-generate,
// benchmarks and tests run on, with at most max_kv_blocks KV blocks (several such backends may
// share a GPU). Returns the KV blocks the backend holds.
Result<int> install_single_rank(Backend& backend, const Checkpoint& checkpoint,
                                int max_kv_blocks = 1 << 30);

// A ModelExecutor over the CPU ModelRunner and a MoeDispatcher (tests and eep-generate).
class CpuExecutor final : public ModelExecutor {
 public:
  CpuExecutor(ModelRunner& runner, MoeDispatcher& moe) : runner_(runner), moe_(moe) {}
  const ModelConfig& config() const override { return runner_.config(); }
  Result<ForwardOutput> forward(const std::vector<SequenceChunk>& batch,
                                const KvBlockManager& blocks, const StepPlan& plan) override;
  Result<SampledTokens> forward_sample(const std::vector<SequenceChunk>& batch,
                                       const std::vector<std::optional<SamplingSpec>>& sampling,
                                       const KvBlockManager& blocks, const StepPlan& plan) override;
  std::vector<std::vector<int64_t>> take_slot_counts() override { return moe_.take_slot_counts(); }
  Result<uint64_t> move_layer_experts(int layer_idx, const std::vector<int>& new_phy2log,
                                      ProcessGroup* ep_group) override;

 private:
  ModelRunner& runner_;
  MoeDispatcher& moe_;
  std::vector<std::byte> sampling_scratch_;
};

}  // namespace eep::worker
