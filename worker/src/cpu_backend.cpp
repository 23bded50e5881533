// The CPU backend: fp32 weights in host memory, Gloo for the EP group (DESIGN.md section 5).
#include <algorithm>
#include <span>

#include "eep/kernels/sampling.h"
#include "eep/worker/backend.h"
#include "eep/worker/cpu_backend.h"
#include "eep/worker/expert_moves.h"

namespace eep::worker {

Result<ForwardOutput> CpuExecutor::forward(const std::vector<SequenceChunk>& batch,
                                           const KvBlockManager& blocks, const StepPlan&) {
  return runner_.forward(batch, blocks, moe_);
}

Result<std::vector<int32_t>> CpuExecutor::forward_sample(
    const std::vector<SequenceChunk>& batch,
    const std::vector<std::optional<SamplingSpec>>& sampling, const KvBlockManager& blocks,
    const StepPlan& plan) {
  EEP_CHECK(sampling.size() == batch.size());
  EEP_ASSIGN_OR_RETURN(ForwardOutput output, forward(batch, blocks, plan));
  const int64_t vocab = output.vocab;
  sampling_scratch_.resize(kernels::cpu::sampling_scratch_bytes(vocab));
  std::vector<int32_t> tokens;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!sampling[i]) continue;
    const SamplingSpec& s = *sampling[i];
    tokens.push_back(kernels::cpu::sample_token(output.row(i), vocab, s.temperature, s.top_p,
                                                s.seed, s.step, sampling_scratch_.data()));
  }
  return tokens;
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
  size_t expert_piece_bytes() const override {
    return 3 * static_cast<size_t>(config_.moe_intermediate_size) * config_.hidden_size *
           sizeof(float);
  }

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
    for (std::span<float> span : piece_spans(runner_->weights(), piece)) {
      out = std::copy_n(reinterpret_cast<const std::byte*>(span.data()), span.size_bytes(), out);
    }
    return Status::ok();
  }

  Status unpack_piece(GenerationState& state, const WeightPiece& piece,
                      const std::byte* in) override {
    auto* generation = dynamic_cast<CpuGeneration*>(&state);
    EEP_CHECK(generation != nullptr);
    for (std::span<float> span : piece_spans(generation->weights, piece)) {
      std::copy_n(in, span.size_bytes(), reinterpret_cast<std::byte*>(span.data()));
      in += span.size_bytes();
    }
    return Status::ok();
  }

  Status install(std::unique_ptr<GenerationState> state, int num_kv_blocks) override {
    auto* generation = dynamic_cast<CpuGeneration*>(state.get());
    EEP_CHECK(generation != nullptr);
    executor_.reset();  // refers to the runner and dispatcher replaced below
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
  const Placement& placement = moe_.placement();
  const int rank = moe_.rank();
  EEP_RETURN_IF_ERROR(check_expert_move(placement, layer_idx, new_phy2log, rank, ep_group));
  const ModelConfig& config = runner_.config();
  // An expert on the wire: gate_proj, up_proj, down_proj, each I * H floats.
  const size_t matrix_floats =
      static_cast<size_t>(config.moe_intermediate_size) * static_cast<size_t>(config.hidden_size);
  const size_t expert_floats = 3 * matrix_floats;
  const std::vector<ExpertMove> moves =
      plan_expert_moves(placement.phy2log[layer_idx], new_phy2log, placement.slots_per_rank);
  const ExpertMoveSchedule schedule = schedule_expert_moves(
      moves, rank, placement.num_ranks, placement.slots_per_rank, expert_floats * sizeof(float));
  std::vector<ExpertWeights>& slots = runner_.weights().layers[layer_idx].slots;
  EEP_CHECK(static_cast<int>(slots.size()) == placement.slots_per_rank);
  const int slots_per_rank = placement.slots_per_rank;

  // Every source of this rank into the send buffer (sends, then local copies) before any slot
  // is written: a slot may be a source and a destination.
  std::vector<float> send((schedule.sends.size() + schedule.local.size()) * expert_floats);
  float* packed = send.data();
  auto pack = [&](const ExpertMove& move) {
    const ExpertWeights& expert = slots[move.src_slot % slots_per_rank];
    EEP_CHECK(expert.gate_proj.size() == matrix_floats && expert.up_proj.size() == matrix_floats &&
              expert.down_proj.size() == matrix_floats);
    packed = std::copy(expert.gate_proj.begin(), expert.gate_proj.end(), packed);
    packed = std::copy(expert.up_proj.begin(), expert.up_proj.end(), packed);
    packed = std::copy(expert.down_proj.begin(), expert.down_proj.end(), packed);
  };
  for (const ExpertMove& move : schedule.sends) pack(move);
  const float* local_sources = packed;
  for (const ExpertMove& move : schedule.local) pack(move);

  std::vector<float> recv(schedule.recvs.size() * expert_floats);
  if (ep_group != nullptr) {
    EEP_RETURN_IF_ERROR(ep_group->all_to_all_v(send.data(), schedule.send_bytes.data(), recv.data(),
                                               schedule.recv_bytes.data()));
  }

  auto unpack = [&](const ExpertMove& move, const float* expert) {
    ExpertWeights& slot = slots[move.dst_slot % slots_per_rank];
    EEP_CHECK(slot.gate_proj.size() == matrix_floats && slot.up_proj.size() == matrix_floats &&
              slot.down_proj.size() == matrix_floats);
    std::copy(expert, expert + matrix_floats, slot.gate_proj.begin());
    std::copy(expert + matrix_floats, expert + 2 * matrix_floats, slot.up_proj.begin());
    std::copy(expert + 2 * matrix_floats, expert + 3 * matrix_floats, slot.down_proj.begin());
  };
  for (size_t i = 0; i < schedule.recvs.size(); ++i) {
    unpack(schedule.recvs[i], recv.data() + i * expert_floats);
  }
  for (size_t i = 0; i < schedule.local.size(); ++i) {
    unpack(schedule.local[i], local_sources + i * expert_floats);
  }
  Status switched = moe_.set_layer_placement(layer_idx, new_phy2log);
  EEP_CHECK_MSG(switched.is_ok(), switched.to_string());  // the row was checked above
  return static_cast<uint64_t>(schedule.num_recv_bytes());
}

}  // namespace eep::worker
