#include "eep/worker/engine_core.h"

#include <algorithm>
#include <cstdlib>

#include <filesystem>
#include <numeric>
#include <thread>

#include "eep/common/log.h"
#include "eep/worker/elastic/lockstep_vote.h"
#include "eep/worker/process_group_gloo.h"

namespace eep::worker {
namespace {

int64_t plan_key(uint64_t plan_id) {
  return static_cast<int64_t>(plan_id) + 1;
}

double milliseconds_between(std::chrono::steady_clock::time_point from,
                            std::chrono::steady_clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

std::string shape_of(const Placement& placement) {
  return std::to_string(placement.num_ranks) + " ranks x " +
         std::to_string(placement.slots_per_rank) + " slots, " +
         std::to_string(placement.num_layers) + " layers of " +
         std::to_string(placement.num_logical_experts) + " experts";
}

// The test hook of a scale (docs/scaling.md, "Test hook"): with EEP_TEST_PAUSE_AT set to a point
// of building a generation ("build_groups", "build_weights") and EEP_TEST_RESUME_FILE to a path,
// the build waits at that point until the file exists (at most 10 minutes), so a test can kill or
// stop processes at an exact stage. EEP_TEST_PAUSE_GENERATION limits it to one generation. Off
// unless the variables are set.
void pause_for_test(const char* point, int64_t generation) {
  const char* pause_at = std::getenv("EEP_TEST_PAUSE_AT");
  const char* resume_file = std::getenv("EEP_TEST_RESUME_FILE");
  if (pause_at == nullptr || resume_file == nullptr || std::string_view(pause_at) != point) return;
  if (const char* only = std::getenv("EEP_TEST_PAUSE_GENERATION");
      only != nullptr && std::to_string(generation) != only) {
    return;
  }
  EEP_LOG_WARN("test hook: paused at " << point << " of generation " << generation << " until "
                                       << resume_file << " exists");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(10);
  while (!std::filesystem::exists(resume_file) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EEP_LOG_WARN("test hook: resumed at " << point << " of generation " << generation);
}

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
  backend_options.moe_combine = options.moe_combine;
  backend_options.batch_invariant = options.batch_invariant;
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
  for (auto& abandoned : abandoned_builds_) abandoned.wait();
  next_.reset();
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
    // A built generation that waits for the switch already has its agreed size.
    const Generation* built = built_generation();
    const int blocks = built ? std::min(built->agreed_kv_blocks, blocks_->num_allocated_blocks())
                             : blocks_->num_blocks();
    capacity.max_model_len =
        std::min(checkpoint_.config().max_position_embeddings, blocks * options_.block_size);
    capacity.num_kv_blocks = blocks;
  }
  return capacity;
}

protocol::WorkerLoad EngineCore::load() const {
  if (!scheduler_) return {};
  return {scheduler_->num_running(), scheduler_->num_waiting(), blocks_->num_free_blocks(),
          blocks_->num_blocks()};
}

Result<Placement> EngineCore::placement_for(const protocol::Assign& assign) const {
  const ModelConfig& config = checkpoint_.config();
  if (!assign.placement) {
    const int slots = options_.slots_per_rank > 0
                          ? options_.slots_per_rank
                          : Placement::min_slots_per_rank(config.num_experts, assign.world_size);
    return Placement::round_robin(config.num_hidden_layers, config.num_experts, assign.world_size,
                                  slots);
  }
  const Placement& placement = *assign.placement;
  const std::string what = "the placement of generation " + std::to_string(assign.generation);
  if (placement.num_ranks != assign.world_size) {
    return error(ErrorCode::kInvalidArgument, what + " has " + std::to_string(placement.num_ranks) +
                                                  " ranks, the generation " +
                                                  std::to_string(assign.world_size));
  }
  if (placement.num_layers != config.num_hidden_layers ||
      placement.num_logical_experts != config.num_experts) {
    return error(ErrorCode::kInvalidArgument,
                 what + " has " + std::to_string(placement.num_layers) + " layers of " +
                     std::to_string(placement.num_logical_experts) + " experts, the model " +
                     checkpoint_name(options_.model_dir) + " " +
                     std::to_string(config.num_hidden_layers) + " layers of " +
                     std::to_string(config.num_experts) +
                     " (is the coordinator's --model the workers' model?)");
  }
  if (Status valid = placement.validate(); !valid.is_ok()) {
    return error(ErrorCode::kInvalidArgument, what + " is invalid: " + valid.message());
  }
  return placement;
}

Status EngineCore::begin_generation(const protocol::Assign& assign) {
  // An older next generation, built or building, is dropped (a build still running ends in the
  // background: it may wait for a dead peer up to the group timeout).
  abandon_next_generation();
  EEP_ASSIGN_OR_RETURN(Placement placement, placement_for(assign));
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
  // 0: the first generation plans the cache after its weights.
  const int own_kv_blocks = blocks_ ? blocks_->num_allocated_blocks() : 0;
  building_ = std::async(std::launch::async, [this, assign, placement = std::move(placement),
                                              control = std::move(control_store),
                                              ep = std::move(ep_store), own_kv_blocks]() mutable {
    return build_generation(assign, std::move(placement), std::move(control), std::move(ep),
                            own_kv_blocks);
  });
  advance(NextGenerationStage::kBuilding,
          "generation " + std::to_string(assign.generation) + " assigned");
  return Status::ok();
}

Result<std::unique_ptr<EngineCore::Generation>> EngineCore::build_generation(
    const protocol::Assign& assign, Placement placement, std::unique_ptr<StoreServer> control_store,
    std::unique_ptr<StoreServer> ep_store, int own_kv_blocks) {
  // Runs on the helper thread: touches only its arguments, the (const) checkpoint and the
  // backend's helper-thread methods.
  const auto started = std::chrono::steady_clock::now();
  auto generation = std::make_unique<Generation>();
  generation->assign = assign;
  generation->control_store = std::move(control_store);
  generation->ep_store = std::move(ep_store);
  generation->placement = std::move(placement);
  generation->stage_started = started;
  pause_for_test("build_groups", assign.generation);
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
  end_build_stage(*generation, "groups");
  pause_for_test("build_weights", assign.generation);
  if (backend_->supports_weight_transfer()) {
    EEP_ASSIGN_OR_RETURN(
        generation->transfer,
        plan_weight_transfer(assign, assign.members[assign.rank], generation->placement,
                             backend_->dense_piece_bytes(), backend_->expert_piece_bytes(),
                             options_.weight_transfer_chunk_bytes));
  }
  if (!generation->transfer) {
    EEP_ASSIGN_OR_RETURN(generation->state,
                         backend_->build(checkpoint_, generation->placement, assign.rank,
                                         generation->ep_group.get()));
    if (backend_->supports_weight_transfer()) {  // the pieces' sizes are known: report them
      const std::vector<size_t> dense = backend_->dense_piece_bytes();
      generation->report.bytes_from_checkpoint =
          std::accumulate(dense.begin(), dense.end(), uint64_t{0}) +
          uint64_t{static_cast<uint64_t>(generation->placement.num_layers)} *
              generation->placement.slots_per_rank * backend_->expert_piece_bytes();
    }
    end_build_stage(*generation, "weights");
  } else {
    const WeightTransferPlan& plan = *generation->transfer;
    EEP_ASSIGN_OR_RETURN(generation->state, backend_->build_for_transfer(
                                                checkpoint_, generation->placement, assign.rank,
                                                generation->ep_group.get(), plan.from_checkpoint));
    generation->report.bytes_from_checkpoint = plan.num_bytes_from_checkpoint;
    // Every member has its buffers before the serving ranks give up a step boundary to the
    // transfer: a member that is slow (or stalled) here delays the scale, never serving.
    if (generation->control_group) {
      int64_t ready = 1;
      EEP_RETURN_IF_ERROR(generation->control_group->all_reduce(&ready, 1, ReduceOp::kMax));
    }
    end_build_stage(*generation, "weights");
    if (!plan.is_new_rank()) {
      // The ranks that serve now send and copy between their steps (engine thread), then agree
      // on the KV cache (agree_on_kv_blocks).
      EEP_LOG_INFO("generation " << assign.generation << " allocated in "
                                 << std::chrono::duration<double>(Clock::now() - started).count()
                                 << " s; its weights come from the serving ranks in "
                                 << plan.chunks.size() << " chunks between steps");
      return generation;
    }
    while (generation->num_chunks_done < plan.chunks.size()) {
      EEP_RETURN_IF_ERROR(run_transfer_chunk(*generation));
    }
    end_build_stage(*generation, "transfer");
  }
  if (own_kv_blocks == 0) {
    EEP_ASSIGN_OR_RETURN(own_kv_blocks, backend_->plan_kv_blocks());
    generation->num_kv_blocks = own_kv_blocks;
  }
  EEP_RETURN_IF_ERROR(agree_on_kv_blocks(*generation, own_kv_blocks));
  end_build_stage(*generation, "kv_agree");
  if (generation->transfer) {  // a new rank (the serving ones warm up in transfer_step)
    EEP_RETURN_IF_ERROR(warm_up_ep_group(*generation));
    end_build_stage(*generation, "ep_warm_up");
  }
  EEP_LOG_INFO("generation " << assign.generation << " built in "
                             << std::chrono::duration<double>(Clock::now() - started).count()
                             << " s (rank " << assign.rank << " of " << assign.world_size << ", "
                             << generation->placement.slots_per_rank << " expert slots, "
                             << generation->agreed_kv_blocks << " KV blocks agreed, "
                             << (assign.placement ? "assigned" : "round-robin")
                             << " placement, weights: " << generation->report.bytes_from_peers
                             << " bytes from peers (" << generation->chunk_seconds << " s in "
                             << generation->num_chunks_done << " chunks), "
                             << generation->report.bytes_from_checkpoint
                             << " from the checkpoint)");
  return generation;
}

void EngineCore::end_build_stage(Generation& generation, const char* stage) {
  const Clock::time_point now = Clock::now();
  generation.report.stages.push_back(
      {stage, std::chrono::duration<double>(now - generation.stage_started).count()});
  generation.stage_started = now;
}

Status EngineCore::agree_on_kv_blocks(Generation& generation, int own_kv_blocks) {
  // DESIGN.md section 6, SYNC_KV_CACHE_MEMORY: every rank serves with the fewest blocks any rank
  // of the generation has, so a request (a migrated one too) fits wherever it goes.
  int64_t agreed = own_kv_blocks;
  if (generation.control_group) {
    EEP_RETURN_IF_ERROR(generation.control_group->all_reduce(&agreed, 1, ReduceOp::kMin));
  }
  generation.agreed_kv_blocks = static_cast<int>(agreed);
  return Status::ok();
}

Status EngineCore::warm_up_ep_group(Generation& generation) {
  ProcessGroup* group = generation.ep_group.get();
  if (group == nullptr) return Status::ok();
  constexpr size_t kBytesPerPeer = 64;
  const size_t num_ranks = static_cast<size_t>(group->size());
  const std::vector<size_t> bytes(num_ranks, kBytesPerPeer);
  EEP_ASSIGN_OR_RETURN(std::byte * staging,
                       backend_->transfer_staging(2 * num_ranks * kBytesPerPeer));
  EEP_RETURN_IF_ERROR(group->all_to_all_v(staging, bytes.data(),
                                          staging + num_ranks * kBytesPerPeer, bytes.data()));
  return backend_->finish_transfer_chunk();
}

Result<bool> EngineCore::next_generation_built() {
  reap_abandoned_builds();
  if (next_stage_.is(NextGenerationStage::kBuilt)) return true;
  if (next_stage_.is(NextGenerationStage::kFailed)) {
    Status failed = std::move(build_failure_);
    advance(NextGenerationStage::kNone, "its failure reported");
    return failed;
  }
  if (!next_stage_.is(NextGenerationStage::kBuilding)) return false;
  if (building_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return false;
  auto built = building_.get();
  if (!built.is_ok()) {
    advance(NextGenerationStage::kNone, "the build failed: " + built.status().message());
    return built.status();
  }
  next_ = std::move(built).value();
  if (next_->transfer && !next_->transfer->is_new_rank()) {
    // Its weights come from this rank's installed ones, between steps (transfer_step).
    advance(NextGenerationStage::kReadyToSend, "built but for the weights this rank sends");
    transfer_wake_ = true;
    return false;
  }
  advance(NextGenerationStage::kBuilt, "built by the helper thread");
  if (!blocks_) {
    const ModelConfig& config = checkpoint_.config();
    blocks_ = std::make_unique<KvBlockManager>(next_->num_kv_blocks, options_.block_size);
    scheduler_ = std::make_unique<Scheduler>(
        *blocks_,
        SchedulerConfig{
            options_.max_num_seqs, options_.max_num_batched_tokens,
            std::min(config.max_position_embeddings, next_->num_kv_blocks * options_.block_size)},
        std::vector<int32_t>(config.eos_token_ids.begin(), config.eos_token_ids.end()));
  }
  return true;
}

void EngineCore::abandon_next_generation() {
  switch_order_.reset();
  if (next_stage_.is(NextGenerationStage::kRetired)) return;
  drop_next_generation("abandoned (rolled back, or replaced by a newer assignment)");
}

void EngineCore::drop_next_generation(std::string_view cause) {
  if (next_) drop_generation(std::move(next_));
  // A build still running (its groups may wait for a peer that died up to the group timeout)
  // ends on its own; serving and the next scale do not wait for it.
  if (building_.valid()) abandoned_builds_.push_back(std::move(building_));
  advance(NextGenerationStage::kNone, cause);
}

void EngineCore::advance(NextGenerationStage to, std::string_view cause) {
  Status moved = next_stage_.transition(to, cause);
  EEP_CHECK(moved.is_ok());  // the table is the engine's contract: a miss is a bug
}

void EngineCore::reap_abandoned_builds() {
  for (auto it = abandoned_builds_.begin(); it != abandoned_builds_.end();) {
    if (it->wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      ++it;
      continue;
    }
    auto built = it->get();
    if (built.is_ok()) {
      drop_generation(std::move(built).value());
    } else {
      EEP_LOG_INFO("an abandoned build ended: " << built.status().to_string());
    }
    it = abandoned_builds_.erase(it);
  }
}

void EngineCore::drop_generation(std::unique_ptr<Generation> generation) {
  EEP_LOG_INFO("dropped generation " << generation->assign.generation
                                     << " before switching to it (rolled back or replaced)");
  generation->state.reset();
  if (generation->control_group) generation->control_group->destroy();
  if (generation->ep_group) generation->ep_group->destroy();
}

Status EngineCore::order_switch(const protocol::Switch& order) {
  const std::string what = "switch to generation " + std::to_string(order.generation);
  if (current_ && order.generation <= generation()) {
    return error(ErrorCode::kFailedPrecondition,
                 what + ": this rank serves generation " + std::to_string(generation()));
  }
  if (!order.leave) {
    const Generation* built = built_generation();
    const bool building_it = next_stage_.is(NextGenerationStage::kBuilding) ||
                             (built && built->assign.generation == order.generation);
    if (!building_it) {
      return error(ErrorCode::kFailedPrecondition,
                   what + ": this rank has not built it and is not building it");
    }
  } else if (!current_) {
    return error(ErrorCode::kFailedPrecondition, what + ": leave, but this rank serves nothing");
  }
  switch_order_ = order;
  return Status::ok();
}

bool EngineCore::can_step() const {
  if (current_) return true;
  const Generation* built = built_generation();
  return built && switch_order_ && !switch_order_->leave &&
         switch_order_->generation == built->assign.generation;
}

Status EngineCore::switch_to_next_generation() {
  std::unique_ptr<Generation> previous = std::move(current_);
  current_ = std::move(next_);
  switch_order_.reset();
  advance(NextGenerationStage::kNone,
          "switched to generation " + std::to_string(current_->assign.generation));
  // Install first: the backend drops what still names the old groups (captured CUDA graphs hold
  // the old NCCL communicator's work, and finalising it would wait for them).
  EEP_RETURN_IF_ERROR(
      backend_->install(std::move(current_->state), blocks_->num_allocated_blocks()));
  const int usable = std::min(current_->agreed_kv_blocks, blocks_->num_allocated_blocks());
  if (usable != blocks_->num_blocks()) {
    EEP_LOG_INFO("serving with " << usable << " of " << blocks_->num_allocated_blocks()
                                 << " KV blocks (the fewest of generation "
                                 << current_->assign.generation << "'s ranks)");
  }
  blocks_->set_num_blocks(usable);
  scheduler_->set_max_model_len(
      std::min(checkpoint_.config().max_position_embeddings, usable * options_.block_size));
  if (previous) {
    if (previous->control_group) previous->control_group->destroy();
    if (previous->ep_group) previous->ep_group->destroy();
  }
  // Counts and plans belong to one generation (its placement, its groups).
  take_expert_load(false);
  last_step_end_.reset();
  if (held_plan_ || moving_plan_) {
    EEP_LOG_INFO("rebalance plan " << (moving_plan_ ? moving_plan_ : held_plan_)->rebalance.plan_id
                                   << " dropped: the generation switched");
  }
  held_plan_.reset();
  moving_plan_.reset();
  newest_plan_id_.reset();
  EEP_LOG_INFO("switched to generation "
               << current_->assign.generation << " as rank " << current_->assign.rank << " of "
               << current_->assign.world_size << " (" << backend_->name() << ")");
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
    return protocol::RequestOutput{
        request.request_id, {}, true, "error", "this rank is not serving yet"};
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
  const Clock::time_point step_started = Clock::now();
  EEP_ASSIGN_OR_RETURN(const bool built, next_generation_built());
  // A rank that is not in a generation yet (a new rank) switches once it has built one and the
  // coordinator ordered the switch (every member built it).
  if (!current_) {
    if (!built || !can_step()) {
      return error(ErrorCode::kFailedPrecondition, "no generation to step in");
    }
    EEP_RETURN_IF_ERROR(switch_to_next_generation());
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
  // The vote of this step (lockstep_vote.h), agreed over the control group.
  LockstepVote vote;
  vote.has_work = scheduler_->has_work();
  vote.wake_epoch = wake_epoch;
  vote.next_generation_pending = next_stage_.is(NextGenerationStage::kBuilding) ||
                                 next_stage_.is(NextGenerationStage::kReadyToSend) ||
                                 next_stage_.is(NextGenerationStage::kSending) ||
                                 next_stage_.is(NextGenerationStage::kBuilt) ||
                                 switch_order_.has_value();
  vote.num_tokens = num_tokens;
  vote.has_prefill = has_prefill;
  const bool switch_ready =
      switch_order_ &&
      (switch_order_->leave || (built_generation() &&
                                built_generation()->assign.generation == switch_order_->generation));
  vote.switch_ready = switch_ready ? switch_order_->generation : 0;
  vote.held_plan = held_plan_ ? plan_key(held_plan_->rebalance.plan_id) : 0;
  vote.moving_plan = moving_plan_ ? plan_key(moving_plan_->rebalance.plan_id) : 0;
  fill_transfer_vote(vote);
  auto fields = vote.encode();
  if (current_->control_group) {
    EEP_RETURN_IF_ERROR(
        current_->control_group->all_reduce(fields.data(), fields.size(), ReduceOp::kMax));
  }
  LocalStepState local;
  local.switch_order_leaves = switch_order_ && switch_order_->leave;
  local.moving_plan = moving_plan_.has_value();
  local.held_plan = held_plan_.has_value();
  local.transfer_ready = vote.transfer_ready;
  local.transferring = next_stage_.is(NextGenerationStage::kSending);
  const StepDecision decision = decide(LockstepAgreement::decode(fields), local);

  if (decision.kind == StepKind::kSwitch) {
    EEP_RETURN_IF_ERROR(switch_to_next_generation());
    result.switched = true;
    return result;  // the next step runs on the new groups
  }
  if (decision.kind == StepKind::kRetire) {
    switch_order_.reset();
    if (!next_stage_.is(NextGenerationStage::kHandedOver)) drop_next_generation("retiring");
    advance(NextGenerationStage::kRetired, "the switch went on without this rank");
    EEP_LOG_INFO("retired: generation " << current_->assign.generation
                                        << " switched to the next without this rank");
    return result;
  }
  transfer_step(decision.transfer);
  if (decision.rebalance == RebalanceAction::kStart) start_moving_plan();
  if (decision.rebalance == RebalanceAction::kStop) {
    result.rebalance_done = finish_rebalance("another rank stopped moving (its move failed)");
  }
  if (decision.kind == StepKind::kChunkOnly) return result;
  if (decision.kind == StepKind::kIdle) {
    result.idle = true;
    result.idle_epoch = decision.idle_epoch;
    if (!result.expert_load) result.expert_load = take_expert_load(true);
    last_step_end_.reset();
    return result;
  }
  if (decision.moves_layers()) EEP_RETURN_IF_ERROR(move_layers(&result));
  if (decision.kind == StepKind::kMovesOnly) {
    end_moving_step(step_started, &result);
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
    sampling.push_back(chunk.samples() ? std::optional<SamplingSpec>(SamplingSpec{
                                             request.params.temperature, request.params.top_p,
                                             request.params.seed, request.output.size()})
                                       : std::nullopt);
  }
  const StepPlan plan{decision.num_tokens, decision.decode_only};
  EEP_ASSIGN_OR_RETURN(std::vector<int32_t> sampled,
                       backend_->executor().forward_sample(batch, sampling, *blocks_, plan));
  ++num_steps_since_report_;
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
  if (decision.moves_layers()) {
    end_moving_step(step_started, &result);
  } else {
    const Clock::time_point now = Clock::now();
    if (num_steps_since_report_ >= kLoadReportSteps && now - last_report_ >= kLoadReportInterval) {
      result.expert_load = take_expert_load(true);
    }
    last_step_end_ = now;
  }
  return result;
}

// ---- EPLB ----

Status EngineCore::begin_rebalance(const protocol::Rebalance& rebalance) {
  const std::string what = "rebalance plan " + std::to_string(rebalance.plan_id);
  if (!current_) return error(ErrorCode::kFailedPrecondition, what + ": not serving yet");
  if (rebalance.generation != generation()) {
    return error(ErrorCode::kFailedPrecondition,
                 what + " is for generation " + std::to_string(rebalance.generation) +
                     ", this rank serves generation " + std::to_string(generation()));
  }
  if (newest_plan_id_ && rebalance.plan_id <= *newest_plan_id_) {
    return error(ErrorCode::kFailedPrecondition, what + " is not newer than plan " +
                                                     std::to_string(*newest_plan_id_) +
                                                     " of this generation");
  }
  const Placement& served = current_->placement;
  const Placement& target = rebalance.placement;
  if (target.num_ranks != served.num_ranks || target.slots_per_rank != served.slots_per_rank ||
      target.num_layers != served.num_layers ||
      target.num_logical_experts != served.num_logical_experts) {
    return error(ErrorCode::kInvalidArgument,
                 what + " has " + shape_of(target) + ", the generation serves " + shape_of(served));
  }
  if (Status valid = target.validate(); !valid.is_ok()) {
    return error(ErrorCode::kInvalidArgument, what + " is invalid: " + valid.message());
  }
  if (rebalance.layers_per_step < 1) {
    return error(ErrorCode::kInvalidArgument, what + " moves " +
                                                  std::to_string(rebalance.layers_per_step) +
                                                  " layers per step; at least 1");
  }
  if (held_plan_) {
    EEP_LOG_INFO(what << " replaces plan " << held_plan_->rebalance.plan_id
                      << ", which had not started");
  }
  newest_plan_id_ = rebalance.plan_id;
  held_plan_.emplace();
  held_plan_->rebalance = rebalance;
  EEP_LOG_INFO(what << " held (" << rebalance.layers_per_step
                    << " layers per step), waiting for every rank");
  return Status::ok();
}

void EngineCore::start_moving_plan() {
  moving_plan_ = std::move(held_plan_);
  held_plan_.reset();
  moving_plan_->started = Clock::now();
  EEP_LOG_INFO("rebalance plan " << moving_plan_->rebalance.plan_id
                                 << ": every rank holds it, moving "
                                 << moving_plan_->rebalance.layers_per_step << " layers per step");
}

Status EngineCore::move_layers(StepResult* result) {
  RebalancePlan& plan = *moving_plan_;
  // The counts so far were routed over the old placement (reported) or, after a step that moved
  // layers, over a mix of old and new (dropped).
  auto load = take_expert_load(plan.num_layers_moved == 0);
  if (load && !result->expert_load) result->expert_load = std::move(load);
  const int num_layers = current_->placement.num_layers;
  const int end_layer =
      std::min(num_layers, plan.num_layers_moved + plan.rebalance.layers_per_step);
  std::string failure;
  for (int layer = plan.num_layers_moved; layer < end_layer && failure.empty(); ++layer) {
    const std::vector<int>& row = plan.rebalance.placement.phy2log[layer];
    const Clock::time_point move_started = Clock::now();
    auto moved = backend_->executor().move_layer_experts(layer, row, current_->ep_group.get());
    plan.move_seconds += std::chrono::duration<double>(Clock::now() - move_started).count();
    if (!moved.is_ok()) {
      failure = "moving layer " + std::to_string(layer) + " failed: " + moved.status().to_string() +
                " (layers [0, " + std::to_string(layer) +
                ") are on the new placement, the others on the old)";
      break;
    }
    plan.bytes_moved += moved.value();
    current_->placement.phy2log[layer] = row;
    ++plan.num_layers_moved;
  }
  if (current_->control_group) {
    // Tokens go where the placement says, so every rank must serve the same one: a move that
    // failed on some ranks only (a collective that broke half way) leaves this generation unable
    // to serve, and the step fails as on any broken collective.
    int64_t agreed[2] = {plan.num_layers_moved, -plan.num_layers_moved};
    EEP_RETURN_IF_ERROR(current_->control_group->all_reduce(agreed, 2, ReduceOp::kMax));
    if (agreed[0] != -agreed[1]) {
      return error(ErrorCode::kInternal,
                   "rebalance plan " + std::to_string(plan.rebalance.plan_id) +
                       ": the ranks moved between " + std::to_string(-agreed[1]) + " and " +
                       std::to_string(agreed[0]) +
                       " layers, so their expert placements differ; this generation cannot "
                       "serve (" +
                       (failure.empty() ? std::string("another rank's move failed") : failure) +
                       ")");
    }
  }
  if (!failure.empty()) {
    result->rebalance_done = finish_rebalance(std::move(failure));
  } else if (plan.num_layers_moved == num_layers) {
    plan.ended = Clock::now();
  }
  return Status::ok();
}

void EngineCore::end_moving_step(Clock::time_point step_started, StepResult* result) {
  const Clock::time_point now = Clock::now();
  if (moving_plan_) {
    RebalancePlan& plan = *moving_plan_;
    plan.longest_step_gap_ms = std::max(
        plan.longest_step_gap_ms, milliseconds_between(last_step_end_.value_or(step_started), now));
    if (plan.num_layers_moved == current_->placement.num_layers) {
      result->rebalance_done = finish_rebalance("");
    }
  }
  last_step_end_ = now;
}

protocol::RebalanceDone EngineCore::finish_rebalance(std::string error) {
  EEP_CHECK(moving_plan_.has_value());
  const RebalancePlan& plan = *moving_plan_;
  protocol::RebalanceDone done;
  done.generation = current_->assign.generation;
  done.plan_id = plan.rebalance.plan_id;
  done.rank = current_->assign.rank;
  done.bytes_moved = plan.bytes_moved;
  const Clock::time_point ended = error.empty() ? plan.ended : Clock::now();
  done.seconds = std::chrono::duration<double>(ended - plan.started).count();
  done.move_seconds = plan.move_seconds;
  done.longest_step_gap_ms = plan.longest_step_gap_ms;
  done.error = std::move(error);
  if (done.error.empty()) {
    EEP_LOG_INFO("rebalance plan " << done.plan_id << " moved: " << done.bytes_moved
                                   << " bytes received in " << done.seconds << " s ("
                                   << done.move_seconds << " s of it moving), longest step gap "
                                   << done.longest_step_gap_ms << " ms");
  } else {
    EEP_LOG_ERROR("rebalance plan " << done.plan_id << " stopped: " << done.error);
  }
  moving_plan_.reset();
  return done;
}

std::optional<protocol::ExpertLoad> EngineCore::take_expert_load(bool report) {
  std::vector<std::vector<int64_t>> counts = backend_->executor().take_slot_counts();
  const uint64_t num_steps = num_steps_since_report_;
  num_steps_since_report_ = 0;
  last_report_ = Clock::now();
  if (!report || num_steps == 0) return std::nullopt;
  return protocol::ExpertLoad{current_->assign.generation, current_->assign.rank, num_steps,
                              std::move(counts)};
}

}  // namespace eep::worker
