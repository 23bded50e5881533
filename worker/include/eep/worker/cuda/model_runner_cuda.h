// The Qwen3-MoE forward of one rank on the CUDA backend (DESIGN.md section 5): bf16 weights and
// activations, an fp32 residual stream, cuBLAS for the dense products, our kernels for the rest,
// the expert-parallel exchange of MoeDispatcherCuda, sampling on the device.
//
// Every buffer is allocated once for the largest step (max_num_tokens tokens, max_num_seqs
// sequences), so the step's kernels always see the same addresses. Decode-only steps replay a
// CUDA graph captured per batch-size bucket: the batch is padded to the bucket (padding tokens
// have id -1, no KV slot and no experts), and the step's inputs are copied into the captured
// buffers before the replay. Every rank of a step uses the same bucket, because the bucket is a
// function of the agreed StepPlan, so the captured all-to-alls have the same sizes everywhere.
// Graphs name the generation's weights and communicator: installing a generation drops them and
// the next decode steps capture again.
//
// One thread (the engine loop) uses it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "eep/kernels/cuda/gemm.h"
#include "eep/kernels/cuda/sampling.h"
#include "eep/worker/cuda/model_weights_cuda.h"
#include "eep/worker/cuda/moe_dispatcher_cuda.h"
#include "eep/worker/engine/backend.h"

namespace eep::worker {

struct CudaRunnerOptions {
  int block_size = 16;
  int max_num_seqs = 256;
  int64_t max_num_tokens = 2048;  // tokens per step at most (the scheduler's budget)
  int max_model_len = 4096;
  bool cuda_graphs = true;
  // Every row's results independent of the batch it is in (docs/cuda_backend.md): dense products
  // through dense_matmul_nt instead of cuBLAS, attention without position splits.
  bool batch_invariant = false;
};

class ModelRunnerCuda final : public ModelExecutor {
 public:
  // Allocates the activations and a KV cache of num_kv_blocks blocks on the current device.
  static Result<std::unique_ptr<ModelRunnerCuda>> create(const ModelConfig& config,
                                                         const CudaRunnerOptions& options,
                                                         int num_kv_blocks, cudaStream_t stream);
  // Device bytes create() allocates besides the KV cache.
  static size_t workspace_bytes(const ModelConfig& config, const CudaRunnerOptions& options);
  // Device bytes of one KV block (keys and values of every layer).
  static size_t kv_block_bytes(const ModelConfig& config, int block_size);
  ~ModelRunnerCuda() override;

  // Serve with these from now on (both outlive their use); drops the captured graphs.
  void install(DeviceWeights* weights, MoeDispatcherCuda* moe);
  // Releases the captured graphs (they hold the communicator's work): before the generation's
  // groups are destroyed without a new install (a lost generation). Captured again on demand.
  void drop_graphs();

  const ModelConfig& config() const override { return config_; }
  Result<ForwardOutput> forward(const std::vector<SequenceChunk>& batch,
                                const KvBlockManager& blocks, const StepPlan& plan) override;
  // Rows whose spec needs_host_sampler() are drawn on the host from their logits (a slow path).
  Result<SampledTokens> forward_sample(const std::vector<SequenceChunk>& batch,
                                       const std::vector<std::optional<SamplingSpec>>& sampling,
                                       const KvBlockManager& blocks, const StepPlan& plan) override;
  std::vector<std::vector<int64_t>> take_slot_counts() override;
  // Packs the layer's source experts (w13 and w2 of each slot, padded width) into a device
  // staging buffer with copies on the stream, exchanges them with ep_group's all_to_all_v (which
  // must be ordered on the same stream: the NCCL group of this backend), unpacks them into their
  // slots in place and rewrites the layer's replica tables in place, so captured decode graphs
  // keep working. Never during a capture; synchronises the stream before returning.
  Result<uint64_t> move_layer_experts(int layer_idx, const std::vector<int>& new_phy2log,
                                      ProcessGroup* ep_group) override;

  // The decode batch sizes graphs are captured for (ascending; the last is max_num_seqs).
  const std::vector<int64_t>& graph_buckets() const { return buckets_; }
  int num_captured_graphs() const { return static_cast<int>(graphs_.size()); }

 private:
  // How a step runs: its (padded) token count, the exchange capacity, the LM-head rows.
  struct Shape {
    int64_t num_tokens = 0;
    int64_t capacity = 0;
    int64_t num_rows = 0;
    int64_t graph_bucket = 0;  // 0: eager
  };

  ModelRunnerCuda(const ModelConfig& config, const CudaRunnerOptions& options, cudaStream_t stream);
  Status allocate(int num_kv_blocks);
  // Validates the batch, packs its inputs on the host and copies them to the device. The LM-head
  // rows are every chunk's wanted rows (rows_out says which), or with `sampling` only the last
  // row of each chunk that samples, with its parameters.
  Result<Shape> stage(const std::vector<SequenceChunk>& batch, const KvBlockManager& blocks,
                      const StepPlan& plan,
                      const std::vector<std::optional<SamplingSpec>>* sampling,
                      ForwardOutput* rows_out);
  // Enqueues the layers for `shape` (captured or run as is), then the LM head for the first
  // min(num_rows, max_logit_rows) rows.
  Status enqueue_layers(const Shape& shape);
  Status enqueue_head(int64_t first_row, int64_t num_rows);
  Status run(const Shape& shape);
  // move_staging_ holds at least num_bytes (grown outside captures, kept for later moves).
  Status reserve_move_staging(size_t num_bytes);

  ModelConfig config_;
  CudaRunnerOptions options_;
  cudaStream_t stream_;
  std::unique_ptr<kernels::cuda::Blas> blas_;
  DeviceWeights* weights_ = nullptr;  // expert moves write its slots
  MoeDispatcherCuda* moe_ = nullptr;
  int64_t max_blocks_per_seq_ = 0;
  int64_t max_logit_rows_ = 0;
  std::vector<int64_t> buckets_;
  std::map<int64_t, cudaGraphExec_t> graphs_;

  // Device memory: one arena for the activations and step inputs, one for the KV cache.
  void* arena_ = nullptr;
  void* kv_arena_ = nullptr;
  size_t kv_layer_elems_ = 0;  // bf16 elements of one layer's keys (or values)
  // Step inputs (device), filled from the pinned staging buffer in one copy.
  int32_t* ids_ = nullptr;            // [max_num_tokens]
  int32_t* positions_ = nullptr;      // [max_num_tokens]
  int32_t* token_seq_idx_ = nullptr;  // [max_num_tokens]
  int32_t* logit_rows_ = nullptr;     // [max_num_tokens]
  int32_t* num_valid_ = nullptr;      // [1]
  int32_t* block_tables_ = nullptr;   // [max_num_seqs, max_blocks_per_seq]
  int64_t* slot_mapping_ = nullptr;   // [max_num_tokens]
  kernels::cuda::DeviceSamplingParams* sampling_params_ = nullptr;  // [max_num_seqs]
  size_t inputs_bytes_ = 0;
  void* staging_ = nullptr;  // pinned host mirror of the step inputs
  // Activations.
  float* x_ = nullptr;                      // [T, H] residual stream
  kernels::cuda::bf16* h_ = nullptr;        // [T, H] normed
  kernels::cuda::bf16* qkv_ = nullptr;      // [T, q_dim + 2 kv_dim]
  kernels::cuda::bf16* q_ = nullptr;        // [T, q_dim]
  kernels::cuda::bf16* attn_ = nullptr;     // [T, q_dim]
  float* router_logits_ = nullptr;          // [T, E]
  int32_t* topk_ids_ = nullptr;             // [T, k]
  float* topk_weights_ = nullptr;           // [T, k]
  kernels::cuda::bf16* head_in_ = nullptr;  // [max_logit_rows, H]
  float* logits_ = nullptr;                 // [max_logit_rows, V]
  int32_t* sampled_ = nullptr;              // [max_num_seqs]
  void* sampling_workspace_ = nullptr;
  size_t sampling_workspace_bytes_ = 0;
  int32_t* sampled_host_ = nullptr;  // pinned [max_num_seqs]
  // The host sampler's row of logits [vocab] and scratch (forward_sample's slow path).
  std::vector<float> host_logits_;
  std::vector<std::byte> host_sampling_scratch_;
  // Expert moves: the packed source experts, then the received ones (device, grown on demand to
  // the largest layer move so far).
  void* move_staging_ = nullptr;
  size_t move_staging_bytes_ = 0;
};

}  // namespace eep::worker
