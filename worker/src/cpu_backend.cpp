// The CPU backend: fp32 weights in host memory, Gloo for the EP group (DESIGN.md section 5).
#include "eep/kernels/sampling.h"
#include "eep/worker/backend.h"
#include "eep/worker/cpu_backend.h"

namespace eep::worker {

Result<ForwardOutput> CpuExecutor::forward(const std::vector<SequenceChunk>& batch,
                                           const KvBlockManager& blocks, const StepPlan&) {
  return runner_.forward(batch, blocks, moe_);
}

Result<std::vector<int32_t>> CpuExecutor::forward_sample(
    const std::vector<SequenceChunk>& batch, const std::vector<std::optional<SamplingSpec>>& sampling,
    const KvBlockManager& blocks, const StepPlan& plan) {
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

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const BackendOptions& options) : options_(options) {}

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

  Status install(std::unique_ptr<GenerationState> state, int num_kv_blocks) override {
    auto* generation = dynamic_cast<CpuGeneration*>(state.get());
    EEP_CHECK(generation != nullptr);
    executor_.reset();  // refers to the runner and dispatcher replaced below
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
  std::unique_ptr<ModelRunner> runner_;
  std::unique_ptr<MoeDispatcher> moe_;
  std::unique_ptr<CpuExecutor> executor_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const BackendOptions& options) {
  return std::make_unique<CpuBackend>(options);
}


Result<uint64_t> CpuExecutor::move_layer_experts(int, const std::vector<int>&, ProcessGroup*) {
  return error(ErrorCode::kFailedPrecondition, "expert moves are not built yet");
}

}  // namespace eep::worker
