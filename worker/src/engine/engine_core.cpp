#include "eep/worker/engine/engine_core.h"

#include <algorithm>

#include "eep/common/log.h"
#include "eep/worker/elastic/lockstep_vote.h"
#include "eep/worker/engine/sampling.h"

namespace eep::worker {
namespace {

int64_t plan_key(uint64_t plan_id) {
  return static_cast<int64_t>(plan_id) + 1;
}

}  // namespace

std::string EngineCore::model_name() const {
  std::string trimmed = options_.model_dir;
  while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
  return trimmed.substr(trimmed.rfind('/') + 1);
}

Result<std::unique_ptr<EngineCore>> EngineCore::create(const EngineOptions& options) {
  auto checkpoint = Checkpoint::open(options.model_dir);
  if (!checkpoint.is_ok()) return checkpoint.status();
  const ModelConfig& config = checkpoint->config();
  EEP_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, make_backend(options.backend, config));
  return std::unique_ptr<EngineCore>(
      new EngineCore(options, std::move(checkpoint).value(), std::move(backend)));
}

EngineCore::EngineCore(EngineOptions options, Checkpoint checkpoint,
                       std::unique_ptr<Backend> backend)
    : options_(std::move(options)),
      checkpoint_(std::move(checkpoint)),
      backend_(std::move(backend)),
      step_timing_(options_.step_times_interval) {}

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
  capacity.model = model_name();
  capacity.vocab_size = checkpoint_.config().vocab_size;
  capacity.block_size = options_.backend.block_size;
  capacity.max_num_seqs = options_.backend.max_num_seqs;
  if (scheduler_) {
    // A built generation that waits for the switch already has its agreed size.
    const Generation* built = built_generation();
    const int blocks = built ? std::min(built->agreed_kv_blocks, blocks_->num_allocated_blocks())
                             : blocks_->num_blocks();
    capacity.max_model_len = std::min(checkpoint_.config().max_position_embeddings,
                                      blocks * options_.backend.block_size);
    capacity.num_kv_blocks = blocks;
  }
  return capacity;
}

protocol::WorkerLoad EngineCore::load() const {
  if (!scheduler_) return {};
  return {scheduler_->num_running(),
          scheduler_->num_waiting(),
          blocks_->num_free_blocks(),
          blocks_->num_blocks(),
          num_steps_,
          std::chrono::duration<double>(step_wait_).count()};
}

std::optional<protocol::RequestOutput> EngineCore::submit(const protocol::SubmitRequest& request) {
  EngineRequest engine_request;
  engine_request.id = request.request_id;
  engine_request.prompt = request.prompt_ids;
  engine_request.output = request.output_ids;
  engine_request.params = request.params;
  // The penalties index the logits by the prompt's and the output's ids.
  for (const std::vector<int32_t>* ids : {&request.prompt_ids, &request.output_ids}) {
    for (int32_t id : *ids) {
      if (id < 0 || id >= checkpoint_.config().vocab_size) {
        return protocol::RequestOutput{
            request.request_id,
            {},
            true,
            "error",
            "token id " + std::to_string(id) + " outside the vocabulary"};
      }
    }
  }
  if (Status checked = check_sampling_params(request.params); !checked.is_ok()) {
    return protocol::RequestOutput{request.request_id, {}, true, "error", checked.message()};
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
  const Clock::time_point scheduled = Clock::now();
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
  vote.next_generation_pending = next_stage_.pending() || switch_order_.has_value();
  vote.num_tokens = num_tokens;
  vote.has_prefill = has_prefill;
  const bool switch_ready =
      switch_order_ &&
      (switch_order_->leave ||
       (built_generation() && built_generation()->assign.generation == switch_order_->generation));
  vote.switch_ready = switch_ready ? switch_order_->generation : 0;
  vote.held_plan = held_plan_ ? plan_key(held_plan_->rebalance.plan_id) : 0;
  vote.moving_plan = moving_plan_ ? plan_key(moving_plan_->rebalance.plan_id) : 0;
  fill_transfer_vote(vote);
  auto fields = vote.encode();
  // A rank that finished its previous step early waits here for the slowest one.
  const Clock::time_point vote_started = Clock::now();
  if (current_->control_group) {
    EEP_RETURN_IF_ERROR(
        current_->control_group->all_reduce(fields.data(), fields.size(), ReduceOp::kMax));
  }
  const Clock::duration vote_wait = Clock::now() - vote_started;
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
  const Clock::time_point prepare_started = Clock::now();
  std::vector<SequenceChunk> batch;
  std::vector<std::optional<SamplingSpec>> sampling;
  batch.reserve(chunks.size());
  for (const ScheduledChunk& chunk : chunks) {
    SequenceChunk sequence{chunk.request->id, chunk.start, {}, false};
    for (int64_t pos = chunk.start; pos < chunk.start + chunk.num_tokens; ++pos) {
      sequence.token_ids.push_back(chunk.request->token_at(pos));
    }
    batch.push_back(std::move(sequence));
    sampling.push_back(chunk.samples() ? std::optional<SamplingSpec>(sampling_spec(*chunk.request))
                                       : std::nullopt);
  }
  const StepPlan plan{decision.num_tokens, decision.decode_only};
  ++num_steps_;
  step_wait_ += vote_wait;
  const Clock::time_point forward_started = Clock::now();
  EEP_ASSIGN_OR_RETURN(SampledTokens sampled,
                       backend_->executor().forward_sample(batch, sampling, *blocks_, plan));
  const Clock::time_point forward_ended = Clock::now();
  ++num_steps_since_report_;
  size_t sampled_idx = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (!sampling[i]) continue;
    protocol::RequestOutput& out = result.outputs.emplace_back();
    out.request_id = chunks[i].request->id;
    out.new_tokens = {sampled.tokens[sampled_idx]};
    if (auto& logprobs = sampled.logprobs[sampled_idx]) out.logprobs = {std::move(*logprobs)};
    ++sampled_idx;
  }
  for (const FinishedRequest& finished : scheduler_->update(chunks, sampled.tokens)) {
    for (auto& out : result.outputs) {
      if (out.request_id == finished.id) {
        out.finished = true;
        out.finish_reason = finished.finish_reason;
        out.error = finished.error;
      }
    }
  }
  if (step_timing_.enabled()) {
    if (last_step_end_) step_timing_.add(StepPhase::kBetween, step_started - *last_step_end_);
    step_timing_.add(StepPhase::kSchedule, scheduled - step_started);
    step_timing_.add(StepPhase::kVote, vote_wait);
    step_timing_.add(StepPhase::kPrepare, forward_started - prepare_started);
    step_timing_.add(StepPhase::kForward, forward_ended - forward_started);
    step_timing_.add(StepPhase::kUpdate, Clock::now() - forward_ended);
    step_timing_.step_done(num_tokens);
    if (auto line = step_timing_.report(Clock::now())) EEP_LOG_INFO("step times: " << *line);
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

}  // namespace eep::worker
