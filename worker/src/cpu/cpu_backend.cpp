// The CPU backend: fp32 weights in host memory, Gloo for the EP group (DESIGN.md section 5).
#include <algorithm>
#include <span>

#include "eep/worker/cpu/cpu_backend.h"
#include "eep/worker/elastic/expert_moves.h"
#include "eep/worker/engine/backend.h"
#include "eep/worker/engine/sampling.h"

namespace eep::worker {

Result<ForwardOutput> CpuExecutor::forward(const std::vector<SequenceChunk>& batch,
                                           const KvBlockManager& blocks, const StepPlan&) {
  return runner_.forward(batch, blocks, moe_);
}

Result<SampledTokens> CpuExecutor::forward_sample(
    const std::vector<SequenceChunk>& batch,
    const std::vector<std::optional<SamplingSpec>>& sampling, const KvBlockManager& blocks,
    const StepPlan& plan) {
  EEP_CHECK(sampling.size() == batch.size());
  EEP_ASSIGN_OR_RETURN(ForwardOutput output, forward(batch, blocks, plan));
  SampledTokens sampled;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!sampling[i]) continue;
    std::optional<protocol::TokenLogprobs> logprobs;
    sampled.tokens.push_back(
        sample_on_host(output.row(i), output.vocab, *sampling[i], sampling_scratch_, &logprobs));
    sampled.logprobs.push_back(std::move(logprobs));
  }
  return sampled;
}

namespace {

class CpuGeneration final : public GenerationState {
 public:
  CpuGeneration(ModelWeights weights, Placement placement, int rank, ProcessGroup* ep_group)
      : weights(std::move(weights)),
        placement(std::move(placement)),
        rank(rank),
        ep_group(ep_group) {}
  ModelWeights weights;
  Placement placement;
  int rank;
  ProcessGroup* ep_group;
};

// The floats of `piece` in `weights`: one tensor, or an expert's gate, up and down projections.
std::vector<std::span<float>> piece_spans(ModelWeights& weights, const WeightPiece& piece) {
  if (piece.layer < 0) {
    const std::vector<std::vector<float>*> tensors = weights.dense_tensors();
    EEP_CHECK(piece.index >= 0 && piece.index < static_cast<int>(tensors.size()));
    return {std::span<float>(*tensors[piece.index])};
  }
  EEP_CHECK(piece.layer < static_cast<int>(weights.layers.size()));
  std::vector<ExpertWeights>& slots = weights.layers[piece.layer].slots;
  EEP_CHECK(piece.index >= 0 && piece.index < static_cast<int>(slots.size()));
  ExpertWeights& expert = slots[piece.index];
  return {std::span<float>(expert.gate_proj), std::span<float>(expert.up_proj),
          std::span<float>(expert.down_proj)};
}

// An expert piece: gate_proj, up_proj, down_proj, each I * H floats.
size_t expert_bytes(const ModelConfig& config) {
  return 3 * static_cast<size_t>(config.moe_intermediate_size) *
         static_cast<size_t>(config.hidden_size) * sizeof(float);
}

// `piece` of `weights` into `out` (its floats in piece_spans order), and back.
Status copy_piece_out(ModelWeights& weights, const WeightPiece& piece, std::byte* out) {
  for (std::span<float> span : piece_spans(weights, piece)) {
    out = std::copy_n(reinterpret_cast<const std::byte*>(span.data()), span.size_bytes(), out);
  }
  return Status::ok();
}

Status copy_piece_in(ModelWeights& weights, const WeightPiece& piece, const std::byte* in) {
  for (std::span<float> span : piece_spans(weights, piece)) {
    std::copy_n(in, span.size_bytes(), reinterpret_cast<std::byte*>(span.data()));
    in += span.size_bytes();
  }
  return Status::ok();
}

class CpuBackend final : public Backend {
 public:
  CpuBackend(const BackendOptions& options, const ModelConfig& config)
      : options_(options), config_(config) {}

  std::string_view name() const override { return "cpu"; }

  Result<std::unique_ptr<ProcessGroup>> create_ep_group(const GroupSpec& spec) override {
    return create_gloo_group(spec);
  }

  Result<std::unique_ptr<GenerationState>> build(const Checkpoint& checkpoint,
                                                 const Placement& placement, int rank,
                                                 ProcessGroup* ep_group) override {
    EEP_ASSIGN_OR_RETURN(ModelWeights weights, ModelWeights::load(checkpoint, placement, rank));
    return std::unique_ptr<GenerationState>(
        new CpuGeneration(std::move(weights), placement, rank, ep_group));
  }

  Result<int> plan_kv_blocks() override { return options_.num_kv_blocks; }

  bool supports_weight_transfer() const override { return true; }
  std::vector<size_t> dense_piece_bytes() const override {
    std::vector<size_t> bytes = ModelWeights::dense_sizes(config_);
    for (size_t& size : bytes) size *= sizeof(float);
    return bytes;
  }
  size_t expert_piece_bytes() const override { return expert_bytes(config_); }

  Result<std::unique_ptr<GenerationState>> build_for_transfer(
      const Checkpoint& checkpoint, const Placement& placement, int rank, ProcessGroup* ep_group,
      const std::vector<CheckpointSlot>& from_checkpoint) override {
    ModelWeights weights = ModelWeights::allocate(config_, placement.slots_per_rank);
    for (const CheckpointSlot& slot : from_checkpoint) {
      EEP_RETURN_IF_ERROR(weights.load_slot(checkpoint, slot.layer, slot.local_slot, slot.expert));
    }
    return std::unique_ptr<GenerationState>(
        new CpuGeneration(std::move(weights), placement, rank, ep_group));
  }

  Result<std::byte*> transfer_staging(size_t bytes) override {
    staging_.resize(bytes);
    return staging_.data();
  }

  Status pack_installed_piece(const WeightPiece& piece, std::byte* out) override {
    EEP_CHECK(runner_ != nullptr);
    return copy_piece_out(runner_->weights(), piece, out);
  }

  Status unpack_piece(GenerationState& state, const WeightPiece& piece,
                      const std::byte* in) override {
    auto* generation = dynamic_cast<CpuGeneration*>(&state);
    EEP_CHECK(generation != nullptr);
    return copy_piece_in(generation->weights, piece, in);
  }

  Status install(std::unique_ptr<GenerationState> state, int num_kv_blocks) override {
    auto* generation = dynamic_cast<CpuGeneration*>(state.get());
    EEP_CHECK(generation != nullptr);
    executor_.reset();                        // refers to the runner and dispatcher replaced below
    std::vector<std::byte>().swap(staging_);  // a transfer before this install is over
    if (runner_) {
      runner_->weights() = std::move(generation->weights);
    } else {
      runner_ = std::make_unique<ModelRunner>(std::move(generation->weights), num_kv_blocks,
                                              options_.block_size);
    }
    moe_ = std::make_unique<MoeDispatcher>(generation->placement, generation->rank,
                                           generation->ep_group);
    executor_ = std::make_unique<CpuExecutor>(*runner_, *moe_);
    return Status::ok();
  }

  ModelExecutor& executor() override {
    EEP_CHECK(executor_ != nullptr);
    return *executor_;
  }

 private:
  BackendOptions options_;
  ModelConfig config_;
  std::unique_ptr<ModelRunner> runner_;
  std::unique_ptr<MoeDispatcher> moe_;
  std::unique_ptr<CpuExecutor> executor_;
  std::vector<std::byte> staging_;  // weight-transfer chunks
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const BackendOptions& options,
                                          const ModelConfig& config) {
  return std::make_unique<CpuBackend>(options, config);
}

Result<uint64_t> CpuExecutor::move_layer_experts(int layer_idx, const std::vector<int>& new_phy2log,
                                                 ProcessGroup* ep_group) {
  std::vector<std::byte> staging;
  PieceIo io;
  io.staging = [&](size_t bytes) -> Result<std::byte*> {
    staging.resize(bytes);
    return staging.data();
  };
  io.pack = [&](const WeightPiece& piece, std::byte* out) {
    return copy_piece_out(runner_.weights(), piece, out);
  };
  io.unpack = [&](const WeightPiece& piece, const std::byte* in) {
    return copy_piece_in(runner_.weights(), piece, in);
  };
  io.finish = [] { return Status::ok(); };
  EEP_ASSIGN_OR_RETURN(const uint64_t received,
                       exchange_layer_experts(moe_.placement(), moe_.rank(), layer_idx, new_phy2log,
                                              ep_group, expert_bytes(runner_.config()), io));
  Status switched = moe_.set_layer_placement(layer_idx, new_phy2log);
  EEP_CHECK_MSG(switched.is_ok(), switched.to_string());  // the row was checked above
  return received;
}

}  // namespace eep::worker
