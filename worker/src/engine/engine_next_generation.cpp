// EngineCore's next generation (elastic/next_generation.h, docs/scaling.md "The worker's side"):
// the build on the helper thread, the stage transitions, the switch order, and the switch.
#include <malloc.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <thread>

#include "eep/common/log.h"
#include "eep/worker/comm/process_group_gloo.h"
#include "eep/worker/engine/engine_core.h"

namespace eep::worker {
namespace {

// A generation's weights are allocated on the helper thread that builds it (its own malloc arena)
// and freed on the engine thread when the next one replaces it: glibc keeps such memory in its
// arenas, so without a trim the process's resident size ratchets up over scales and recoveries.
// malloc_trim returns the free pages of every arena to the kernel (a few milliseconds, at a
// switch).
void return_freed_memory() {
  ::malloc_trim(0);
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

}  // namespace

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
                     model_name() + " " + std::to_string(config.num_hidden_layers) + " layers of " +
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
  const bool keeps_weights = keeps_previous_weights(assign);
  building_ =
      std::async(std::launch::async, [this, assign, placement = std::move(placement),
                                      control = std::move(control_store), ep = std::move(ep_store),
                                      own_kv_blocks, keeps_weights]() mutable {
        return build_generation(assign, std::move(placement), std::move(control), std::move(ep),
                                own_kv_blocks, keeps_weights);
      });
  advance(NextGenerationStage::kBuilding,
          "generation " + std::to_string(assign.generation) + " assigned");
  return Status::ok();
}

bool EngineCore::keeps_previous_weights(const protocol::Assign& assign) const {
  const auto& previous = assign.previous_members;
  const auto self = std::find(previous.begin(), previous.end(), assign.members[assign.rank]);
  if (self == previous.end()) return true;
  return kept_weights_ && assign.previous_placement &&
         kept_weights_->rank == static_cast<int>(self - previous.begin()) &&
         kept_weights_->placement == *assign.previous_placement;
}

Result<std::unique_ptr<EngineCore::Generation>> EngineCore::build_generation(
    const protocol::Assign& assign, Placement placement, std::unique_ptr<StoreServer> control_store,
    std::unique_ptr<StoreServer> ep_store, int own_kv_blocks, bool keeps_weights) {
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
      spec.timeout = options_.backend.group_timeout;
      spec.collective_timeout = options_.backend.collective_timeout;
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
  if (generation->transfer && generation->transfer->recovery) {
    // A survivor whose kept weights are not what the coordinator names (a rebalance the loss
    // interrupted had moved some layers) cannot send them: then every member reads the
    // checkpoint, so that the plan stays one for all.
    int64_t all_keep = keeps_weights ? 1 : 0;
    if (generation->control_group) {
      EEP_RETURN_IF_ERROR(generation->control_group->all_reduce(&all_keep, 1, ReduceOp::kMin));
    }
    if (all_keep == 0) {
      EEP_LOG_WARN("recovery to generation "
                   << assign.generation << ": "
                   << (keeps_weights ? "another survivor's" : "this rank's")
                   << " kept weights are not the placement the coordinator names; every rank "
                      "reads the checkpoint");
      generation->transfer.reset();
    }
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
    if (plan.sends_between_steps()) {
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
  if (generation->transfer) {  // chunks run here (the serving ranks warm up in transfer_step)
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
  if (next_->transfer && next_->transfer->sends_between_steps()) {
    // Its weights come from this rank's installed ones, between steps (transfer_step).
    advance(NextGenerationStage::kReadyToSend, "built but for the weights this rank sends");
    transfer_wake_ = true;
    return false;
  }
  advance(NextGenerationStage::kBuilt, "built by the helper thread");
  if (!blocks_) {
    const ModelConfig& config = checkpoint_.config();
    blocks_ = std::make_unique<KvBlockManager>(next_->num_kv_blocks, options_.backend.block_size);
    scheduler_ = std::make_unique<Scheduler>(
        *blocks_,
        SchedulerConfig{options_.backend.max_num_seqs, options_.backend.max_num_batched_tokens,
                        std::min(config.max_position_embeddings,
                                 next_->num_kv_blocks * options_.backend.block_size)},
        std::vector<int32_t>(config.eos_token_ids.begin(), config.eos_token_ids.end()));
  }
  return true;
}

void EngineCore::abandon_next_generation() {
  switch_order_.reset();
  if (next_stage_.is(NextGenerationStage::kRetired)) return;
  drop_next_generation("abandoned (rolled back, or replaced by a newer assignment)");
}

void EngineCore::abandon_current_generation(std::string_view cause) {
  if (!current_ || retired()) return;
  const int64_t lost = generation();
  abandon_next_generation();
  // The groups go before the generation: the backend first drops what holds their work.
  backend_->release_collectives();
  if (current_->control_group) current_->control_group->destroy();
  if (current_->ep_group) current_->ep_group->destroy();
  kept_weights_ = KeptWeights{current_->assign.rank, current_->placement};
  current_.reset();
  // Counts and plans belonged to the lost generation (its placement, its groups).
  take_expert_load(false);
  last_step_end_.reset();
  held_plan_.reset();
  moving_plan_.reset();
  newest_plan_id_.reset();
  return_freed_memory();
  EEP_LOG_WARN("abandoned generation "
               << lost << " (" << cause << "); kept the weights, "
               << (scheduler_ ? scheduler_->num_running() + scheduler_->num_waiting() : 0)
               << " requests and their KV cache; waiting for the next generation");
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
  kept_weights_.reset();
  const int usable = std::min(current_->agreed_kv_blocks, blocks_->num_allocated_blocks());
  if (usable != blocks_->num_blocks()) {
    EEP_LOG_INFO("serving with " << usable << " of " << blocks_->num_allocated_blocks()
                                 << " KV blocks (the fewest of generation "
                                 << current_->assign.generation << "'s ranks)");
  }
  blocks_->set_num_blocks(usable);
  scheduler_->set_max_model_len(
      std::min(checkpoint_.config().max_position_embeddings, usable * options_.backend.block_size));
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
  return_freed_memory();
  EEP_LOG_INFO("switched to generation "
               << current_->assign.generation << " as rank " << current_->assign.rank << " of "
               << current_->assign.world_size << " (" << backend_->name() << ")");
  return Status::ok();
}

}  // namespace eep::worker
