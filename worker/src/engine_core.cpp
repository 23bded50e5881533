#include "eep/worker/engine_core.h"

#include <algorithm>

#include "eep/common/log.h"
#include "eep/worker/process_group_gloo.h"

namespace eep::worker {
namespace {

// The fields of step()'s all-reduce, all reduced with max: [has work, wake epoch, next
// generation pending, next generation not built, tokens this step, has a prefill chunk].
constexpr int kNumLockstepFields = 6;

std::string checkpoint_name(const std::string& dir) {
  std::string trimmed = dir;
  while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
  return trimmed.substr(trimmed.rfind('/') + 1);
}

}  // namespace

Result<std::unique_ptr<EngineCore>> EngineCore::create(const EngineOptions& options) {
  auto checkpoint = Checkpoint::open(options.model_dir);
  if (!checkpoint.is_ok()) return checkpoint.status();
  const ModelConfig& config = checkpoint->config();
  BackendOptions backend_options;
  backend_options.device = options.device;
  backend_options.device_idx = options.device_idx;
  backend_options.num_kv_blocks = options.num_kv_blocks;
  backend_options.block_size = options.block_size;
  backend_options.max_num_seqs = options.max_num_seqs;
  backend_options.max_num_batched_tokens = options.max_num_batched_tokens;
  backend_options.gpu_memory_utilization = options.gpu_memory_utilization;
  backend_options.cuda_graphs = options.cuda_graphs;
  backend_options.group_timeout = options.group_timeout;
  EEP_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, make_backend(backend_options, config));
  return std::unique_ptr<EngineCore>(
      new EngineCore(options, std::move(checkpoint).value(), std::move(backend)));
}

EngineCore::EngineCore(EngineOptions options, Checkpoint checkpoint,
                       std::unique_ptr<Backend> backend)
    : options_(std::move(options)),
      checkpoint_(std::move(checkpoint)),
      backend_(std::move(backend)) {}

EngineCore::~EngineCore() {
  if (building_.valid()) building_.wait();
  built_.reset();
  // The backend before the groups: its captured CUDA graphs hold NCCL work, and finalising a
  // communicator waits for them.
  backend_.reset();
  current_.reset();
}

protocol::ModelCapacity EngineCore::capacity() const {
  protocol::ModelCapacity capacity;
  capacity.model = checkpoint_name(options_.model_dir);
  capacity.vocab_size = checkpoint_.config().vocab_size;
  capacity.block_size = options_.block_size;
  if (scheduler_) {
    capacity.max_model_len = scheduler_->config().max_model_len;
    capacity.num_kv_blocks = blocks_->num_blocks();
  }
  return capacity;
}

protocol::WorkerLoad EngineCore::load() const {
  if (!scheduler_) return {};
  return {scheduler_->num_running(), scheduler_->num_waiting(), blocks_->num_free_blocks(),
          blocks_->num_blocks()};
}

Status EngineCore::begin_generation(const protocol::Assign& assign) {
  if (building_.valid()) building_.wait();  // an older build: let it finish, then drop it
  built_.reset();
  // Rank 0 serves the generation's stores; they must listen before anyone connects.
  std::unique_ptr<StoreServer> control_store, ep_store;
  if (assign.world_size > 1 && assign.rank == 0) {
    auto control = StoreServer::start(options_.bind_host, assign.control_store.port);
    if (!control.is_ok()) return control.status();
    auto ep = StoreServer::start(options_.bind_host, assign.ep_store.port);
    if (!ep.is_ok()) return ep.status();
    control_store = std::move(control).value();
    ep_store = std::move(ep).value();
  }
  const bool first = blocks_ == nullptr;
  building_ = std::async(std::launch::async, [this, assign, control = std::move(control_store),
                                              ep = std::move(ep_store), first]() mutable {
    return build_generation(assign, std::move(control), std::move(ep), first);
  });
  return Status::ok();
}

Result<std::unique_ptr<EngineCore::Generation>> EngineCore::build_generation(
    const protocol::Assign& assign, std::unique_ptr<StoreServer> control_store,
    std::unique_ptr<StoreServer> ep_store, bool first) {
  // Runs on the helper thread: touches only its arguments, the (const) checkpoint and the
  // backend's helper-thread methods.
  const auto started = std::chrono::steady_clock::now();
  auto generation = std::make_unique<Generation>();
  generation->assign = assign;
  generation->control_store = std::move(control_store);
  generation->ep_store = std::move(ep_store);
  const ModelConfig& config = checkpoint_.config();
  const int slots = options_.slots_per_rank > 0
                        ? options_.slots_per_rank
                        : Placement::min_slots_per_rank(config.num_experts, assign.world_size);
  EEP_ASSIGN_OR_RETURN(generation->placement,
                       Placement::round_robin(config.num_hidden_layers, config.num_experts,
                                              assign.world_size, slots));
  if (assign.world_size > 1) {
    for (const char* name : {"control", "ep"}) {
      GroupSpec spec;
      spec.generation = static_cast<uint64_t>(assign.generation);
      spec.name = name;
      spec.rank = assign.rank;
      spec.size = assign.world_size;
      const auto& store = std::string(name) == "control" ? assign.control_store : assign.ep_store;
      spec.store_host = store.host;
      spec.store_port = store.port;
      spec.timeout = options_.group_timeout;
      spec.bind_host = options_.bind_host;
      auto group = std::string(name) == "control" ? create_gloo_group(spec)
                                                  : backend_->create_ep_group(spec);
      if (!group.is_ok()) return group.status();
      (std::string(name) == "control" ? generation->control_group : generation->ep_group) =
          std::move(group).value();
    }
  }
  EEP_ASSIGN_OR_RETURN(generation->state,
                       backend_->build(checkpoint_, generation->placement, assign.rank,
                                       generation->ep_group.get()));
  if (first) {
    EEP_ASSIGN_OR_RETURN(generation->num_kv_blocks, backend_->plan_kv_blocks());
  }
  EEP_LOG_INFO("generation "
               << assign.generation << " built in "
               << std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()
               << " s (rank " << assign.rank << " of " << assign.world_size << ", " << slots
               << " expert slots)");
  return generation;
}

Result<bool> EngineCore::next_generation_built() {
  if (built_) return true;
  if (!building_.valid()) return false;
  if (building_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return false;
  auto built = building_.get();
  if (!built.is_ok()) return built.status();
  built_ = std::move(built).value();
  if (!blocks_) {
    const ModelConfig& config = checkpoint_.config();
    blocks_ = std::make_unique<KvBlockManager>(built_->num_kv_blocks, options_.block_size);
    scheduler_ = std::make_unique<Scheduler>(
        *blocks_,
        SchedulerConfig{options_.max_num_seqs, options_.max_num_batched_tokens,
                        std::min(config.max_position_embeddings,
                                 built_->num_kv_blocks * options_.block_size)},
        std::vector<int32_t>(config.eos_token_ids.begin(), config.eos_token_ids.end()));
  }
  return true;
}

Status EngineCore::switch_to(std::unique_ptr<Generation> next) {
  std::unique_ptr<Generation> previous = std::move(current_);
  current_ = std::move(next);
  // Install first: the backend drops what still names the old groups (captured CUDA graphs hold
  // the old NCCL communicator's work, and finalising it would wait for them).
  EEP_RETURN_IF_ERROR(backend_->install(std::move(current_->state), blocks_->num_blocks()));
  if (previous) {
    if (previous->control_group) previous->control_group->destroy();
    if (previous->ep_group) previous->ep_group->destroy();
  }
  EEP_LOG_INFO("switched to generation " << current_->assign.generation << " as rank "
                                         << current_->assign.rank << " of "
                                         << current_->assign.world_size << " (" << backend_->name()
                                         << ")");
  return Status::ok();
}

std::optional<protocol::RequestOutput> EngineCore::submit(const protocol::SubmitRequest& request) {
  EngineRequest engine_request;
  engine_request.id = request.request_id;
  engine_request.prompt = request.prompt_ids;
  engine_request.output = request.output_ids;
  engine_request.params = request.params;
  for (int32_t id : request.prompt_ids) {
    if (id < 0 || id >= checkpoint_.config().vocab_size) {
      return protocol::RequestOutput{request.request_id,
                                     {},
                                     true,
                                     "error",
                                     "token id " + std::to_string(id) + " outside the vocabulary"};
    }
  }
  if (!scheduler_) {
    return protocol::RequestOutput{request.request_id, {}, true, "error",
                                   "this rank is not serving yet"};
  }
  Status added = scheduler_->add(std::move(engine_request));
  if (!added.is_ok()) {
    return protocol::RequestOutput{request.request_id, {}, true, "error", added.message()};
  }
  return std::nullopt;
}

std::optional<protocol::RequestOutput> EngineCore::cancel(uint64_t request_id) {
  if (!scheduler_ || !scheduler_->cancel(request_id)) return std::nullopt;
  return protocol::RequestOutput{request_id, {}, true, "cancelled", ""};
}

Result<StepResult> EngineCore::step(uint64_t wake_epoch) {
  StepResult result;
  EEP_ASSIGN_OR_RETURN(const bool built, next_generation_built());
  // A rank that is not in a generation yet (a new rank) switches as soon as it has built one.
  if (!current_) {
    if (!built) return error(ErrorCode::kFailedPrecondition, "no generation to step in");
    EEP_RETURN_IF_ERROR(switch_to(std::move(built_)));
    result.switched = true;
  }
  // Scheduled before the agreement so that every rank learns the step's shape. If the step does
  // not run (a switch, idle), the chunks are dropped: the scheduler gives them again next time.
  std::vector<ScheduledChunk> chunks = scheduler_->schedule();
  int64_t num_tokens = 0;
  bool has_prefill = false;
  for (const ScheduledChunk& chunk : chunks) {
    num_tokens += chunk.num_tokens;
    has_prefill = has_prefill || chunk.num_tokens != 1;
  }
  int64_t fields[kNumLockstepFields] = {scheduler_->has_work() ? 1 : 0,
                                        static_cast<int64_t>(wake_epoch),
                                        building_.valid() || built_ ? 1 : 0,
                                        building_.valid() && !built_ ? 1 : 0,
                                        num_tokens,
                                        has_prefill ? 1 : 0};
  if (current_->control_group) {
    EEP_RETURN_IF_ERROR(
        current_->control_group->all_reduce(fields, kNumLockstepFields, ReduceOp::kMax));
  }
  if (fields[2] == 1 && fields[3] == 0) {
    // Every rank has built the next generation (or is not part of it): switch here, together.
    if (built_) {
      EEP_RETURN_IF_ERROR(switch_to(std::move(built_)));
      result.switched = true;
      return result;  // the next step runs on the new groups
    }
    retired_ = true;
    EEP_LOG_INFO("retired: generation " << current_->assign.generation
                                        << " switched to the next without this rank");
    return result;
  }
  if (fields[0] == 0) {
    result.idle = true;
    result.idle_epoch = static_cast<uint64_t>(fields[1]);
    return result;
  }

  // The forward step (a dummy one when this rank has nothing).
  std::vector<SequenceChunk> batch;
  std::vector<std::optional<SamplingSpec>> sampling;
  batch.reserve(chunks.size());
  for (const ScheduledChunk& chunk : chunks) {
    SequenceChunk sequence{chunk.request->id, chunk.start, {}, false};
    for (int64_t pos = chunk.start; pos < chunk.start + chunk.num_tokens; ++pos) {
      sequence.token_ids.push_back(chunk.request->token_at(pos));
    }
    batch.push_back(std::move(sequence));
    const EngineRequest& request = *chunk.request;
    sampling.push_back(chunk.samples()
                           ? std::optional<SamplingSpec>(SamplingSpec{
                                 request.params.temperature, request.params.top_p,
                                 request.params.seed, request.output.size()})
                           : std::nullopt);
  }
  const StepPlan plan{std::max<int64_t>(fields[4], 1), fields[5] == 0};
  EEP_ASSIGN_OR_RETURN(std::vector<int32_t> sampled,
                       backend_->executor().forward_sample(batch, sampling, *blocks_, plan));
  ++step_count_;
  size_t sampled_idx = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (!sampling[i]) continue;
    result.outputs.push_back({chunks[i].request->id, {sampled[sampled_idx++]}, false, "", ""});
  }
  for (const FinishedRequest& finished : scheduler_->update(chunks, sampled)) {
    for (auto& out : result.outputs) {
      if (out.request_id == finished.id) {
        out.finished = true;
        out.finish_reason = finished.finish_reason;
        out.error = finished.error;
      }
    }
  }
  return result;
}

}  // namespace eep::worker
