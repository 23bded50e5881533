#include "eep/worker/cuda/cuda_backend.h"

#include <cstdio>

#include "eep/common/log.h"
#include "eep/worker/comm/process_group_nccl.h"
#include "eep/worker/cuda/cuda_status.h"
#include "eep/worker/cuda/model_runner_cuda.h"
#include "eep/worker/cuda/model_weights_cuda.h"
#include "eep/worker/cuda/moe_dispatcher_cuda.h"

namespace eep::worker {
namespace {

// Device memory kept free besides the planned buffers: captured graphs, cuBLAS and NCCL
// internals, the next generation's exchange buffers.
constexpr size_t kReserveBytes = size_t{1} << 30;

class CudaGeneration final : public GenerationState {
 public:
  std::unique_ptr<DeviceWeights> weights;
  std::unique_ptr<MoeDispatcherCuda> moe;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(const BackendOptions& options, const ModelConfig& config, cudaStream_t stream)
      : options_(options), config_(config), stream_(stream) {}

  ~CudaBackend() override {
    cudaSetDevice(options_.device_idx);
    cudaStreamSynchronize(stream_);
    runner_.reset();
    current_.reset();
    if (staging_ != nullptr) cudaFree(staging_);
    cudaStreamDestroy(stream_);
  }

  std::string_view name() const override { return "cuda"; }

  Result<std::unique_ptr<ProcessGroup>> create_ep_group(const GroupSpec& spec) override {
    NcclGroupOptions nccl;
    nccl.device = options_.device_idx;
    nccl.stream = stream_;
    return create_nccl_group(spec, nccl);
  }

  Result<std::unique_ptr<GenerationState>> build(const Checkpoint& checkpoint,
                                                 const Placement& placement, int rank,
                                                 ProcessGroup* ep_group) override {
    return build_generation(checkpoint, placement, rank, ep_group, nullptr);
  }

  // build(), or with `only_slots` build_for_transfer().
  Result<std::unique_ptr<GenerationState>> build_generation(
      const Checkpoint& checkpoint, const Placement& placement, int rank, ProcessGroup* ep_group,
      const std::vector<CheckpointSlot>* only_slots) {
    EEP_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device_idx));
    auto generation = std::make_unique<CudaGeneration>();
    EEP_ASSIGN_OR_RETURN(generation->weights, DeviceWeights::load(checkpoint, placement, rank,
                                                                  options_.device_idx, only_slots));
    EEP_ASSIGN_OR_RETURN(
        generation->moe,
        MoeDispatcherCuda::create(placement, rank, ep_group, options_.max_num_batched_tokens,
                                  config_.hidden_size, DeviceWeights::padded_intermediate(config_),
                                  config_.num_experts_per_tok, stream_, options_.moe_combine));
    EEP_LOG_INFO("generation weights on GPU "
                 << options_.device_idx << ": " << generation->weights->num_bytes() / (1 << 20)
                 << " MiB, exchange buffers " << generation->moe->device_bytes() / (1 << 20)
                 << " MiB (" << moe_combine_name(options_.moe_combine) << " combine)");
    return std::unique_ptr<GenerationState>(std::move(generation));
  }

  bool supports_weight_transfer() const override { return true; }
  std::vector<size_t> dense_piece_bytes() const override {
    return DeviceWeights::dense_piece_bytes(config_);
  }
  size_t expert_piece_bytes() const override { return DeviceWeights::expert_piece_bytes(config_); }

  Result<std::unique_ptr<GenerationState>> build_for_transfer(
      const Checkpoint& checkpoint, const Placement& placement, int rank, ProcessGroup* ep_group,
      const std::vector<CheckpointSlot>& from_checkpoint) override {
    return build_generation(checkpoint, placement, rank, ep_group, &from_checkpoint);
  }

  // Device staging, on stream_ like every EP group's operations; kept until the next install.
  Result<std::byte*> transfer_staging(size_t bytes) override {
    EEP_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device_idx));
    if (bytes > staging_bytes_) {
      EEP_RETURN_IF_ERROR(free_staging());
      const cudaError_t err = cudaMalloc(&staging_, bytes);
      if (err != cudaSuccess) {
        cudaGetLastError();  // do not leave the failure for the next launch check to report
        staging_ = nullptr;
        return error(ErrorCode::kResourceExhausted,
                     "weight transfer: cannot allocate " + std::to_string(bytes >> 20) +
                         " MiB of device staging (" + cudaGetErrorString(err) +
                         "); lower --weight-transfer-chunk-kb or --gpu-memory-utilization");
      }
      staging_bytes_ = bytes;
    }
    return static_cast<std::byte*>(staging_);
  }

  Status pack_installed_piece(const WeightPiece& piece, std::byte* out) override {
    EEP_CHECK(current_ != nullptr);
    return current_->weights->copy_piece_out(piece, out, stream_);
  }

  Status unpack_piece(GenerationState& state, const WeightPiece& piece,
                      const std::byte* in) override {
    auto* generation = dynamic_cast<CudaGeneration*>(&state);
    EEP_CHECK(generation != nullptr);
    return generation->weights->copy_piece_in(piece, in, stream_);
  }

  Status finish_transfer_chunk() override {
    EEP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return Status::ok();
  }

  Result<int> plan_kv_blocks() override {
    EEP_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device_idx));
    // A new rank plans after its transfer: its staging is not the KV cache's to lose.
    EEP_RETURN_IF_ERROR(free_staging());
    size_t free_bytes = 0, total_bytes = 0;
    EEP_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes));
    const double budget = static_cast<double>(total_bytes) * options_.gpu_memory_utilization;
    const double used = static_cast<double>(total_bytes - free_bytes);
    const double workspace =
        static_cast<double>(ModelRunnerCuda::workspace_bytes(config_, runner_options()));
    const double kv_bytes = budget - used - workspace - static_cast<double>(kReserveBytes);
    const double block_bytes =
        static_cast<double>(ModelRunnerCuda::kv_block_bytes(config_, options_.block_size));
    const double blocks = kv_bytes / block_bytes;
    char line[256];
    std::snprintf(line, sizeof(line),
                  "GPU %d: %.1f GiB total, %.1f GiB in use, budget %.1f GiB "
                  "(--gpu-memory-utilization %.2f), activations %.2f GiB, KV cache %.2f GiB",
                  options_.device_idx, total_bytes / 1073741824.0, used / 1073741824.0,
                  budget / 1073741824.0, options_.gpu_memory_utilization, workspace / 1073741824.0,
                  std::max(kv_bytes, 0.0) / 1073741824.0);
    if (blocks < 1.0) {
      return error(ErrorCode::kResourceExhausted,
                   std::string(line) +
                       ": no room for a KV cache; raise --gpu-memory-utilization, lower "
                       "--max-num-batched-tokens or spread the experts over more GPUs");
    }
    EEP_LOG_INFO(line << ", " << static_cast<int64_t>(blocks) << " blocks of "
                      << options_.block_size << " positions");
    return static_cast<int>(std::min(blocks, 1e9));
  }

  Status install(std::unique_ptr<GenerationState> state, int num_kv_blocks) override {
    EEP_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device_idx));
    std::unique_ptr<CudaGeneration> next(dynamic_cast<CudaGeneration*>(state.release()));
    EEP_CHECK(next != nullptr);
    if (!runner_) {
      CudaRunnerOptions runner = runner_options();
      runner.max_model_len =
          std::min(config_.max_position_embeddings, num_kv_blocks * options_.block_size);
      EEP_ASSIGN_OR_RETURN(runner_,
                           ModelRunnerCuda::create(config_, runner, num_kv_blocks, stream_));
    }
    runner_->install(next->weights.get(), next->moe.get());
    current_ = std::move(next);  // the previous generation's buffers go now
    return free_staging();       // a transfer before this install is over
  }

  ModelExecutor& executor() override {
    EEP_CHECK(runner_ != nullptr);
    return *runner_;
  }

  void release_collectives() override {
    if (!runner_) return;
    cudaSetDevice(options_.device_idx);
    runner_->drop_graphs();
  }

 private:
  CudaRunnerOptions runner_options() const {
    CudaRunnerOptions runner;
    runner.block_size = options_.block_size;
    runner.max_num_seqs = options_.max_num_seqs;
    runner.max_num_tokens = options_.max_num_batched_tokens;
    runner.max_model_len = config_.max_position_embeddings;
    runner.cuda_graphs = options_.cuda_graphs;
    runner.batch_invariant = options_.batch_invariant;
    return runner;
  }

  Status free_staging() {
    if (staging_ == nullptr) return Status::ok();
    // The last chunk synchronised the stream: nothing reads the buffer any more.
    const cudaError_t err = cudaFree(staging_);
    staging_ = nullptr;
    staging_bytes_ = 0;
    EEP_CUDA_RETURN_IF_ERROR(err);
    return Status::ok();
  }

  BackendOptions options_;
  ModelConfig config_;
  cudaStream_t stream_;
  void* staging_ = nullptr;  // weight-transfer chunks, device
  size_t staging_bytes_ = 0;
  std::unique_ptr<CudaGeneration> current_;
  std::unique_ptr<ModelRunnerCuda> runner_;
};

}  // namespace

Result<std::unique_ptr<Backend>> make_cuda_backend(const BackendOptions& options,
                                                   const ModelConfig& config) {
  int num_devices = 0;
  const cudaError_t counted = cudaGetDeviceCount(&num_devices);
  if (counted != cudaSuccess || options.device_idx >= num_devices) {
    return error(ErrorCode::kFailedPrecondition,
                 "no CUDA device " + std::to_string(options.device_idx) + " (" +
                     (counted != cudaSuccess ? std::string(cudaGetErrorString(counted))
                                             : std::to_string(num_devices) + " devices") +
                     ")");
  }
  EEP_CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device_idx));
  cudaStream_t stream = nullptr;
  EEP_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  return std::unique_ptr<Backend>(new CudaBackend(options, config, stream));
}

}  // namespace eep::worker
