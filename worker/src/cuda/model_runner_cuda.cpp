#include "eep/worker/cuda/model_runner_cuda.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "eep/common/log.h"
#include "eep/kernels/cuda/attention.h"
#include "eep/kernels/cuda/embedding.h"
#include "eep/kernels/cuda/rmsnorm.h"
#include "eep/kernels/cuda/router.h"
#include "eep/worker/cuda/cuda_status.h"
#include "eep/worker/elastic/expert_moves.h"
#include "eep/worker/engine/sampling.h"

namespace eep::worker {
namespace {

namespace ops = kernels::cuda;
using ops::bf16;

size_t align_up(size_t n, size_t alignment = 256) {
  return (n + alignment - 1) / alignment * alignment;
}

// The device layout of a step's inputs (int32 arrays, then int64, then sampling parameters, then
// the block tables last so that a step copies only the rows it uses).
struct InputLayout {
  size_t ids, positions, token_seq_idx, logit_rows, num_valid, slot_mapping, sampling, block_tables,
      total;
  InputLayout(int64_t max_tokens, int64_t max_seqs, int64_t max_blocks_per_seq) {
    size_t at = 0;
    auto take = [&](size_t bytes) {
      const size_t offset = at;
      at = align_up(at + bytes, 64);
      return offset;
    };
    ids = take(max_tokens * sizeof(int32_t));
    positions = take(max_tokens * sizeof(int32_t));
    token_seq_idx = take(max_tokens * sizeof(int32_t));
    logit_rows = take(max_tokens * sizeof(int32_t));
    num_valid = take(sizeof(int32_t));
    slot_mapping = take(max_tokens * sizeof(int64_t));
    sampling = take(max_seqs * sizeof(ops::DeviceSamplingParams));
    block_tables = take(max_seqs * max_blocks_per_seq * sizeof(int32_t));
    total = at;
  }
};

// Decode batch sizes with a captured graph: fine steps for small batches, then every 32.
std::vector<int64_t> make_buckets(int64_t max_seqs, int64_t max_tokens) {
  std::vector<int64_t> buckets;
  const int64_t limit = std::min(max_seqs, max_tokens);
  for (int64_t b : {1, 2, 4, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128}) {
    if (b < limit) buckets.push_back(b);
  }
  for (int64_t b = 160; b < limit; b += 32) buckets.push_back(b);
  buckets.push_back(limit);
  return buckets;
}

// The activations' layout in the arena, from the largest step.
struct ActivationLayout {
  size_t x, h, qkv, q, attn, router_logits, topk_ids, topk_weights, head_in, logits, sampled,
      sampling_workspace, total;
  ActivationLayout(const ModelConfig& c, int64_t max_tokens, int64_t max_rows, int64_t max_seqs,
                   size_t sampling_bytes) {
    const int64_t q_dim = int64_t{c.num_attention_heads} * c.head_dim;
    const int64_t kv_dim = int64_t{c.num_key_value_heads} * c.head_dim;
    size_t at = 0;
    auto take = [&](size_t bytes) {
      const size_t offset = at;
      at = align_up(at + bytes);
      return offset;
    };
    x = take(max_tokens * c.hidden_size * sizeof(float));
    h = take(max_tokens * c.hidden_size * sizeof(bf16));
    qkv = take(max_tokens * (q_dim + 2 * kv_dim) * sizeof(bf16));
    q = take(max_tokens * q_dim * sizeof(bf16));
    attn = take(max_tokens * q_dim * sizeof(bf16));
    router_logits = take(max_tokens * c.num_experts * sizeof(float));
    topk_ids = take(max_tokens * c.num_experts_per_tok * sizeof(int32_t));
    topk_weights = take(max_tokens * c.num_experts_per_tok * sizeof(float));
    head_in = take(max_rows * c.hidden_size * sizeof(bf16));
    logits = take(max_rows * c.vocab_size * sizeof(float));
    sampled = take(max_seqs * sizeof(int32_t));
    sampling_workspace = take(sampling_bytes);
    total = at;
  }
};

int64_t max_logit_rows(const CudaRunnerOptions& options) {
  return std::min<int64_t>(std::max(options.max_num_seqs, 1), options.max_num_tokens);
}

int64_t max_blocks_per_seq(const CudaRunnerOptions& options) {
  return (options.max_model_len + options.block_size - 1) / options.block_size;
}

}  // namespace

size_t ModelRunnerCuda::kv_block_bytes(const ModelConfig& c, int block_size) {
  return 2 * static_cast<size_t>(c.num_hidden_layers) * block_size * c.num_key_value_heads *
         c.head_dim * sizeof(bf16);
}

size_t ModelRunnerCuda::workspace_bytes(const ModelConfig& c, const CudaRunnerOptions& options) {
  const int64_t rows = max_logit_rows(options);
  const ActivationLayout activations(
      c, options.max_num_tokens, rows, options.max_num_seqs,
      ops::sampling_workspace_bytes(options.max_num_seqs, c.vocab_size));
  const InputLayout inputs(options.max_num_tokens, options.max_num_seqs,
                           max_blocks_per_seq(options));
  return activations.total + inputs.total + ops::Blas::kWorkspaceBytes;
}

ModelRunnerCuda::ModelRunnerCuda(const ModelConfig& config, const CudaRunnerOptions& options,
                                 cudaStream_t stream)
    : config_(config), options_(options), stream_(stream) {}

ModelRunnerCuda::~ModelRunnerCuda() {
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  for (auto& [bucket, exec] : graphs_) cudaGraphExecDestroy(exec);
  if (arena_ != nullptr) cudaFree(arena_);
  if (kv_arena_ != nullptr) cudaFree(kv_arena_);
  if (staging_ != nullptr) cudaFreeHost(staging_);
  if (sampled_host_ != nullptr) cudaFreeHost(sampled_host_);
  if (move_staging_ != nullptr) cudaFree(move_staging_);
}

Result<std::unique_ptr<ModelRunnerCuda>> ModelRunnerCuda::create(const ModelConfig& config,
                                                                 const CudaRunnerOptions& options,
                                                                 int num_kv_blocks,
                                                                 cudaStream_t stream) {
  if (options.max_num_tokens < 1 || options.max_num_seqs < 1 || options.block_size < 1 ||
      options.max_model_len < 1 || num_kv_blocks < 1) {
    return error(ErrorCode::kInvalidArgument, "CUDA runner options must be positive");
  }
  std::unique_ptr<ModelRunnerCuda> runner(new ModelRunnerCuda(config, options, stream));
  EEP_RETURN_IF_ERROR(runner->allocate(num_kv_blocks));
  return runner;
}

Status ModelRunnerCuda::allocate(int num_kv_blocks) {
  const ModelConfig& c = config_;
  max_blocks_per_seq_ = max_blocks_per_seq(options_);
  max_logit_rows_ = max_logit_rows(options_);
  buckets_ = make_buckets(options_.max_num_seqs, options_.max_num_tokens);
  blas_ = std::make_unique<ops::Blas>(stream_);
  if (!blas_->ok()) return error(ErrorCode::kInternal, "cuBLAS could not be initialised");
  blas_->set_batch_invariant(options_.batch_invariant);

  sampling_workspace_bytes_ = ops::sampling_workspace_bytes(options_.max_num_seqs, c.vocab_size);
  const ActivationLayout act(c, options_.max_num_tokens, max_logit_rows_, options_.max_num_seqs,
                             sampling_workspace_bytes_);
  const InputLayout in(options_.max_num_tokens, options_.max_num_seqs, max_blocks_per_seq_);
  inputs_bytes_ = in.total;
  EEP_CUDA_RETURN_IF_ERROR(cudaMalloc(&arena_, act.total + in.total));
  auto* base = static_cast<std::byte*>(arena_);
  x_ = reinterpret_cast<float*>(base + act.x);
  h_ = reinterpret_cast<bf16*>(base + act.h);
  qkv_ = reinterpret_cast<bf16*>(base + act.qkv);
  q_ = reinterpret_cast<bf16*>(base + act.q);
  attn_ = reinterpret_cast<bf16*>(base + act.attn);
  router_logits_ = reinterpret_cast<float*>(base + act.router_logits);
  topk_ids_ = reinterpret_cast<int32_t*>(base + act.topk_ids);
  topk_weights_ = reinterpret_cast<float*>(base + act.topk_weights);
  head_in_ = reinterpret_cast<bf16*>(base + act.head_in);
  logits_ = reinterpret_cast<float*>(base + act.logits);
  sampled_ = reinterpret_cast<int32_t*>(base + act.sampled);
  sampling_workspace_ = base + act.sampling_workspace;
  std::byte* inputs = base + act.total;
  ids_ = reinterpret_cast<int32_t*>(inputs + in.ids);
  positions_ = reinterpret_cast<int32_t*>(inputs + in.positions);
  token_seq_idx_ = reinterpret_cast<int32_t*>(inputs + in.token_seq_idx);
  logit_rows_ = reinterpret_cast<int32_t*>(inputs + in.logit_rows);
  num_valid_ = reinterpret_cast<int32_t*>(inputs + in.num_valid);
  slot_mapping_ = reinterpret_cast<int64_t*>(inputs + in.slot_mapping);
  sampling_params_ = reinterpret_cast<ops::DeviceSamplingParams*>(inputs + in.sampling);
  block_tables_ = reinterpret_cast<int32_t*>(inputs + in.block_tables);
  EEP_CUDA_RETURN_IF_ERROR(cudaMallocHost(&staging_, in.total));
  EEP_CUDA_RETURN_IF_ERROR(cudaMallocHost(reinterpret_cast<void**>(&sampled_host_),
                                          options_.max_num_seqs * sizeof(int32_t)));

  kv_layer_elems_ =
      static_cast<size_t>(num_kv_blocks) * options_.block_size * c.num_key_value_heads * c.head_dim;
  EEP_CUDA_RETURN_IF_ERROR(
      cudaMalloc(&kv_arena_, kv_block_bytes(c, options_.block_size) * num_kv_blocks));
  EEP_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(
      kv_arena_, 0, kv_block_bytes(c, options_.block_size) * num_kv_blocks, stream_));
  return cuda_status(cudaStreamSynchronize(stream_), "KV cache initialisation");
}

void ModelRunnerCuda::install(DeviceWeights* weights, MoeDispatcherCuda* moe) {
  drop_graphs();
  weights_ = weights;
  moe_ = moe;
}

void ModelRunnerCuda::drop_graphs() {
  cudaStreamSynchronize(stream_);
  for (auto& [bucket, exec] : graphs_) cudaGraphExecDestroy(exec);
  graphs_.clear();
}

std::vector<std::vector<int64_t>> ModelRunnerCuda::take_slot_counts() {
  return moe_ != nullptr ? moe_->take_slot_counts() : std::vector<std::vector<int64_t>>{};
}

Result<ModelRunnerCuda::Shape> ModelRunnerCuda::stage(
    const std::vector<SequenceChunk>& batch, const KvBlockManager& blocks, const StepPlan& plan,
    const std::vector<std::optional<SamplingSpec>>* sampling, ForwardOutput* rows_out) {
  const ModelConfig& c = config_;
  if (weights_ == nullptr) return error(ErrorCode::kFailedPrecondition, "no weights installed");
  if (static_cast<int64_t>(batch.size()) > options_.max_num_seqs) {
    return error(ErrorCode::kInvalidArgument, "a step of " + std::to_string(batch.size()) +
                                                  " sequences exceeds max_num_seqs " +
                                                  std::to_string(options_.max_num_seqs));
  }
  int64_t num_tokens = 0;
  bool all_single = true;
  for (const SequenceChunk& chunk : batch) {
    const int64_t n = static_cast<int64_t>(chunk.token_ids.size());
    const int64_t end = chunk.start_pos + n;
    if (blocks.capacity_tokens(chunk.seq_id) < end) {
      return error(ErrorCode::kFailedPrecondition,
                   "sequence " + std::to_string(chunk.seq_id) + " has KV room for " +
                       std::to_string(blocks.capacity_tokens(chunk.seq_id)) + " positions, needs " +
                       std::to_string(end));
    }
    if (end > c.max_position_embeddings || end > options_.max_model_len) {
      return error(ErrorCode::kInvalidArgument,
                   "sequence " + std::to_string(chunk.seq_id) + " reaches position " +
                       std::to_string(end) + ", beyond the runner's " +
                       std::to_string(std::min(c.max_position_embeddings, options_.max_model_len)));
    }
    for (int32_t id : chunk.token_ids) {
      if (id < 0 || id >= c.vocab_size) {
        return error(ErrorCode::kInvalidArgument, "token id " + std::to_string(id) +
                                                      " outside the vocabulary of " +
                                                      std::to_string(c.vocab_size));
      }
    }
    num_tokens += n;
    all_single = all_single && n == 1;
  }
  if (num_tokens > options_.max_num_tokens || plan.capacity > options_.max_num_tokens) {
    return error(ErrorCode::kInvalidArgument,
                 "a step of " + std::to_string(std::max(num_tokens, plan.capacity)) +
                     " tokens exceeds max_num_batched_tokens " +
                     std::to_string(options_.max_num_tokens));
  }

  Shape shape;
  const int64_t capacity = std::max({plan.capacity, num_tokens, int64_t{1}});
  if (options_.cuda_graphs && plan.decode_only && all_single && !buckets_.empty() &&
      capacity <= buckets_.back()) {
    shape.graph_bucket = *std::lower_bound(buckets_.begin(), buckets_.end(), capacity);
    shape.num_tokens = shape.capacity = shape.graph_bucket;
  } else {
    shape.num_tokens = std::max<int64_t>(num_tokens, 1);  // a dummy step runs one padding token
    shape.capacity = capacity;
  }

  // Pack the inputs into the pinned mirror of the device layout.
  const InputLayout in(options_.max_num_tokens, options_.max_num_seqs, max_blocks_per_seq_);
  auto* base = static_cast<std::byte*>(staging_);
  auto* ids = reinterpret_cast<int32_t*>(base + in.ids);
  auto* positions = reinterpret_cast<int32_t*>(base + in.positions);
  auto* seq_idx = reinterpret_cast<int32_t*>(base + in.token_seq_idx);
  auto* rows = reinterpret_cast<int32_t*>(base + in.logit_rows);
  auto* num_valid = reinterpret_cast<int32_t*>(base + in.num_valid);
  auto* slots = reinterpret_cast<int64_t*>(base + in.slot_mapping);
  auto* params = reinterpret_cast<ops::DeviceSamplingParams*>(base + in.sampling);
  auto* tables = reinterpret_cast<int32_t*>(base + in.block_tables);
  int64_t t = 0;
  int64_t num_rows = 0;
  rows_out->vocab = c.vocab_size;
  for (size_t s = 0; s < batch.size(); ++s) {
    const SequenceChunk& chunk = batch[s];
    const auto& table = blocks.block_table(chunk.seq_id);
    if (static_cast<int64_t>(table.size()) > max_blocks_per_seq_) {
      return error(ErrorCode::kInvalidArgument, "sequence " + std::to_string(chunk.seq_id) +
                                                    " holds more KV blocks than max_model_len");
    }
    std::copy(table.begin(), table.end(), tables + s * max_blocks_per_seq_);
    std::fill(tables + s * max_blocks_per_seq_ + table.size(),
              tables + (s + 1) * max_blocks_per_seq_, 0);
    const int64_t n = static_cast<int64_t>(chunk.token_ids.size());
    rows_out->first_row.push_back(num_rows);
    rows_out->num_rows.push_back(chunk.all_logits ? n : std::min<int64_t>(n, 1));
    // With sampling, the head computes only the last row of each chunk that samples.
    const bool sampled = sampling != nullptr && (*sampling)[s].has_value();
    if (sampled) {
      const SamplingSpec& spec = *(*sampling)[s];
      params[num_rows] = {spec.temperature, spec.top_p, spec.seed, spec.step};
    }
    for (int64_t i = 0; i < n; ++i, ++t) {
      const int64_t pos = chunk.start_pos + i;
      ids[t] = chunk.token_ids[i];
      positions[t] = static_cast<int32_t>(pos);
      seq_idx[t] = static_cast<int32_t>(s);
      slots[t] = blocks.slot_of(chunk.seq_id, pos);
      const bool wanted =
          sampling != nullptr ? sampled && i == n - 1 : chunk.all_logits || i == n - 1;
      if (wanted) rows[num_rows++] = static_cast<int32_t>(t);
    }
  }
  *num_valid = static_cast<int32_t>(t);
  for (; t < shape.num_tokens; ++t) {  // padding tokens
    ids[t] = -1;
    positions[t] = 0;
    seq_idx[t] = -1;
    slots[t] = -1;
  }
  shape.num_rows = num_rows;
  if (shape.graph_bucket > 0) {
    for (int64_t r = num_rows; r < shape.graph_bucket; ++r) rows[r] = 0;
    shape.num_rows = shape.graph_bucket;
  }
  const size_t copy_bytes = in.block_tables + batch.size() * max_blocks_per_seq_ * sizeof(int32_t);
  EEP_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(ids_, staging_, copy_bytes, cudaMemcpyHostToDevice, stream_));
  return shape;
}

Status ModelRunnerCuda::enqueue_layers(const Shape& shape) {
  const ModelConfig& c = config_;
  const int64_t T = shape.num_tokens;
  const int64_t hidden = c.hidden_size;
  const int64_t q_dim = int64_t{c.num_attention_heads} * c.head_dim;
  const int64_t kv_dim = int64_t{c.num_key_value_heads} * c.head_dim;
  const float eps = static_cast<float>(c.rms_norm_eps);
  EEP_CUDA_RETURN_IF_ERROR(
      ops::embedding(weights_->embed(), c.vocab_size, ids_, T, hidden, x_, stream_));
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const DeviceLayerWeights& w = weights_->layer(l);
    bf16* k_cache = static_cast<bf16*>(kv_arena_) + (2 * l) * kv_layer_elems_;
    bf16* v_cache = k_cache + kv_layer_elems_;
    EEP_CUDA_RETURN_IF_ERROR(ops::rmsnorm(x_, nullptr, w.input_norm, h_, T, hidden, eps, stream_));
    EEP_CUBLAS_RETURN_IF_ERROR(
        blas_->matmul_nt(h_, w.qkv_proj, qkv_, T, q_dim + 2 * kv_dim, hidden));
    ops::QkvPrepareArgs prep;
    prep.qkv = qkv_;
    prep.q_norm = w.q_norm;
    prep.k_norm = w.k_norm;
    prep.positions = positions_;
    prep.slot_mapping = slot_mapping_;
    prep.num_tokens = T;
    prep.num_heads = c.num_attention_heads;
    prep.num_kv_heads = c.num_key_value_heads;
    prep.head_dim = c.head_dim;
    prep.eps = eps;
    prep.theta = static_cast<float>(c.rope_theta);
    prep.q_out = q_;
    prep.k_cache = k_cache;
    prep.v_cache = v_cache;
    EEP_CUDA_RETURN_IF_ERROR(ops::qkv_prepare(prep, stream_));
    ops::PagedAttentionArgs attn;
    attn.q = q_;
    attn.k_cache = k_cache;
    attn.v_cache = v_cache;
    attn.block_tables = block_tables_;
    attn.token_seq_idx = token_seq_idx_;
    attn.positions = positions_;
    attn.num_tokens = T;
    attn.num_heads = c.num_attention_heads;
    attn.num_kv_heads = c.num_key_value_heads;
    attn.head_dim = c.head_dim;
    attn.block_size = options_.block_size;
    attn.max_blocks_per_seq = max_blocks_per_seq_;
    attn.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    attn.out = attn_;
    // Splits of a token's positions depend on how many tokens share the launch.
    if (options_.batch_invariant) attn.max_splits = 1;
    EEP_CUDA_RETURN_IF_ERROR(ops::paged_attention(attn, stream_));
    // The output projection adds straight into the fp32 residual stream.
    EEP_CUBLAS_RETURN_IF_ERROR(blas_->matmul_nt(attn_, w.o_proj, x_, T, hidden, q_dim, 1.0f));

    EEP_CUDA_RETURN_IF_ERROR(ops::rmsnorm(x_, nullptr, w.post_norm, h_, T, hidden, eps, stream_));
    EEP_CUBLAS_RETURN_IF_ERROR(
        blas_->matmul_nt(h_, w.router, router_logits_, T, c.num_experts, hidden, 0.0f));
    EEP_CUDA_RETURN_IF_ERROR(ops::router_topk(router_logits_, T, c.num_experts,
                                              c.num_experts_per_tok, c.norm_topk_prob, num_valid_,
                                              topk_ids_, topk_weights_, stream_));
    EEP_RETURN_IF_ERROR(moe_->forward(l, h_, topk_ids_, topk_weights_, T, shape.capacity,
                                      MoeLayerWeightsCuda{w.w13, w.w2}, x_));
  }
  return Status::ok();
}

Status ModelRunnerCuda::enqueue_head(int64_t first_row, int64_t num_rows) {
  const ModelConfig& c = config_;
  EEP_CUDA_RETURN_IF_ERROR(ops::rmsnorm(x_, logit_rows_ + first_row, weights_->final_norm(),
                                        head_in_, num_rows, c.hidden_size,
                                        static_cast<float>(c.rms_norm_eps), stream_));
  EEP_CUBLAS_RETURN_IF_ERROR(blas_->matmul_nt(head_in_, weights_->lm_head(), logits_, num_rows,
                                              c.vocab_size, c.hidden_size, 0.0f));
  return Status::ok();
}

Status ModelRunnerCuda::run(const Shape& shape) {
  if (shape.graph_bucket == 0) {
    EEP_RETURN_IF_ERROR(enqueue_layers(shape));
    if (shape.num_rows > 0) {
      EEP_RETURN_IF_ERROR(enqueue_head(0, std::min(shape.num_rows, max_logit_rows_)));
    }
    return Status::ok();
  }
  auto it = graphs_.find(shape.graph_bucket);
  if (it == graphs_.end()) {
    // Capture this bucket's step (recording only: the replay below runs it). Thread-local
    // capture mode lets the helper thread allocate a next generation meanwhile.
    const auto started = std::chrono::steady_clock::now();
    EEP_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    Status enqueued = enqueue_layers(shape);
    if (enqueued.is_ok()) enqueued = enqueue_head(0, shape.num_rows);
    cudaGraph_t graph = nullptr;
    const cudaError_t ended = cudaStreamEndCapture(stream_, &graph);
    EEP_RETURN_IF_ERROR(enqueued);
    EEP_CUDA_RETURN_IF_ERROR(ended);
    cudaGraphExec_t exec = nullptr;
    const cudaError_t instantiated = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    EEP_CUDA_RETURN_IF_ERROR(instantiated);
    it = graphs_.emplace(shape.graph_bucket, exec).first;
    const double capture_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
            .count();
    EEP_LOG_INFO("captured the decode graph of batch size " << shape.graph_bucket << " in "
                                                            << capture_ms << " ms");
  }
  return cuda_status(cudaGraphLaunch(it->second, stream_), "decode graph launch");
}

Result<ForwardOutput> ModelRunnerCuda::forward(const std::vector<SequenceChunk>& batch,
                                               const KvBlockManager& blocks, const StepPlan& plan) {
  ForwardOutput output;
  EEP_ASSIGN_OR_RETURN(const Shape shape, stage(batch, blocks, plan, nullptr, &output));
  EEP_RETURN_IF_ERROR(run(shape));
  // Only the real rows come back (a graph computes its padding rows too).
  int64_t num_rows = 0;
  for (int64_t n : output.num_rows) num_rows += n;
  output.logits.resize(num_rows * config_.vocab_size);
  for (int64_t first = 0; first < num_rows; first += max_logit_rows_) {
    const int64_t n = std::min(max_logit_rows_, num_rows - first);
    if (first > 0) EEP_RETURN_IF_ERROR(enqueue_head(first, n));
    EEP_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(output.logits.data() + first * config_.vocab_size,
                                             logits_, n * config_.vocab_size * sizeof(float),
                                             cudaMemcpyDeviceToHost, stream_));
    EEP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  }
  EEP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return output;
}

Result<SampledTokens> ModelRunnerCuda::forward_sample(
    const std::vector<SequenceChunk>& batch,
    const std::vector<std::optional<SamplingSpec>>& sampling, const KvBlockManager& blocks,
    const StepPlan& plan) {
  EEP_CHECK(sampling.size() == batch.size());
  ForwardOutput unused;
  EEP_ASSIGN_OR_RETURN(const Shape shape, stage(batch, blocks, plan, &sampling, &unused));
  EEP_RETURN_IF_ERROR(run(shape));
  const int64_t num_sampled = std::count_if(sampling.begin(), sampling.end(),
                                            [](const auto& spec) { return spec.has_value(); });
  SampledTokens sampled;
  sampled.tokens.resize(num_sampled);
  sampled.logprobs.resize(num_sampled);
  if (num_sampled > 0) {
    EEP_CUDA_RETURN_IF_ERROR(ops::sample_tokens(logits_, num_sampled, config_.vocab_size,
                                                sampling_params_, sampling_workspace_,
                                                sampling_workspace_bytes_, sampled_, stream_));
    EEP_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(sampled_host_, sampled_, num_sampled * sizeof(int32_t),
                                             cudaMemcpyDeviceToHost, stream_));
  }
  EEP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  std::copy(sampled_host_, sampled_host_ + num_sampled, sampled.tokens.begin());
  // The slow path (docs/serving.md, "Sampling"): rows whose spec the device sampler cannot draw
  // (penalties, top_k, min_p, log-probabilities) bring their logits to the host, where the CPU
  // backend's sampler draws them; the device's token for them is discarded.
  const int64_t vocab = config_.vocab_size;
  int64_t row = 0;
  for (const std::optional<SamplingSpec>& spec : sampling) {
    if (!spec) continue;
    if (spec->needs_host_sampler()) {
      host_logits_.resize(vocab);
      EEP_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host_logits_.data(), logits_ + row * vocab,
                                               vocab * sizeof(float), cudaMemcpyDeviceToHost,
                                               stream_));
      EEP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
      sampled.tokens[row] = sample_on_host(host_logits_.data(), vocab, *spec,
                                           host_sampling_scratch_, &sampled.logprobs[row]);
    }
    ++row;
  }
  return sampled;
}

Status ModelRunnerCuda::reserve_move_staging(size_t num_bytes) {
  if (num_bytes <= move_staging_bytes_) return Status::ok();
  // The previous move synchronised the stream before returning: nothing reads the old buffer.
  if (move_staging_ != nullptr) {
    EEP_CUDA_RETURN_IF_ERROR(cudaFree(move_staging_));
    move_staging_ = nullptr;
    move_staging_bytes_ = 0;
  }
  const cudaError_t err = cudaMalloc(&move_staging_, num_bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();  // do not leave the failure for the next launch check to report
    move_staging_ = nullptr;
    return error(ErrorCode::kResourceExhausted,
                 "expert move: cannot allocate " + std::to_string(num_bytes >> 20) +
                     " MiB of device staging (" + cudaGetErrorString(err) +
                     "); move fewer experts per layer or lower --gpu-memory-utilization");
  }
  move_staging_bytes_ = num_bytes;
  return Status::ok();
}

Result<uint64_t> ModelRunnerCuda::move_layer_experts(int layer_idx,
                                                     const std::vector<int>& new_phy2log,
                                                     ProcessGroup* ep_group) {
  if (weights_ == nullptr || moe_ == nullptr) {
    return error(ErrorCode::kFailedPrecondition, "expert move: no weights installed");
  }
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  EEP_CUDA_RETURN_IF_ERROR(cudaStreamIsCapturing(stream_, &capture));
  if (capture != cudaStreamCaptureStatusNone) {
    return error(ErrorCode::kFailedPrecondition, "expert move: cannot run during a graph capture");
  }
  EEP_CHECK(weights_->slots_per_rank() == moe_->placement().slots_per_rank);
  // A slot's expert piece: w13 [2 * Ip, H] then w2 [H, Ip], bf16, padding included (it stays
  // zero). Every copy is ordered on stream_, as the EP group's all_to_all_v.
  PieceIo io;
  io.staging = [&](size_t bytes) -> Result<std::byte*> {
    EEP_RETURN_IF_ERROR(reserve_move_staging(bytes));
    return static_cast<std::byte*>(move_staging_);
  };
  io.pack = [&](const WeightPiece& piece, std::byte* out) {
    return weights_->copy_piece_out(piece, out, stream_);
  };
  io.unpack = [&](const WeightPiece& piece, const std::byte* in) {
    return weights_->copy_piece_in(piece, in, stream_);
  };
  // The weights are in place and the staging buffer is free again.
  io.finish = [&] { return cuda_status(cudaStreamSynchronize(stream_), "expert move"); };
  EEP_ASSIGN_OR_RETURN(
      const uint64_t received,
      exchange_layer_experts(moe_->placement(), moe_->rank(), layer_idx, new_phy2log, ep_group,
                             DeviceWeights::expert_piece_bytes(config_), io));
  EEP_RETURN_IF_ERROR(moe_->set_layer_placement(layer_idx, new_phy2log));
  return received;
}

}  // namespace eep::worker
