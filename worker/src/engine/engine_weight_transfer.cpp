// EngineCore's part of a scale's weight transfer (docs/weight_transfer.md): the ranks of the
// next generation that serve now send and copy their installed weights between two of their
// steps, a chunk per step, while the new ranks receive on their helper thread.
//
// When: every rank of the current generation that takes part becomes "ready" once it can run
// chunk 0: a rank of g+1 once its helper thread has built g+1's groups and buffers and every
// member has (a barrier on g+1's control group); a leaving rank of a scale-down once it holds its
// handover plan. The lockstep vote (lockstep_vote.h) carries: blocked (building the next
// generation, not ready yet), the ready generation (agreed over the ready ranks as a range),
// whether some rank is not ready (taking part or not), over this generation's group (the plan's
// chunks run over g's EP group, which every rank of g must then join), transferring, and whether
// some rank is not transferring. At the first step at which nobody is blocked,
// every ready rank is ready for the same generation, every rank is ready if the chunks run over
// g's group, and no rebalance plan moves, every ready rank starts: from that step on each runs the
// next chunk after the all-reduce, every step, until the plan's chunks (the same number on every
// rank) are done; then a member of g+1 agrees on the KV cache size and has built g+1, a leaving
// rank is done. The fleet does not go idle while a chunk runs anywhere.
//
// A rank stops when its scale is rolled back (or its chunk fails) at a step of its own. Chunks
// over g+1's groups then fail at once on the others (the stopped rank destroyed those groups).
// Chunks over g's EP group must not: the others' chunk would meet the stopped rank's next MoE
// exchange on the same group. So a chunk over g's group runs only at a step at which every rank
// of g still transfers; otherwise the others wait, serving, for their own rollback.
#include <algorithm>

#include "eep/common/log.h"
#include "eep/worker/engine/engine_core.h"

namespace eep::worker {

BuildReport EngineCore::build_report() const {
  const Generation* built = built_generation();
  return built ? built->report : BuildReport{};
}

bool EngineCore::take_transfer_wake() {
  return std::exchange(transfer_wake_, false);
}

Status EngineCore::begin_weight_handover(const protocol::Assign& assign) {
  abandon_next_generation();
  if (!current_) {
    return error(ErrorCode::kFailedPrecondition, "handover to generation " +
                                                     std::to_string(assign.generation) +
                                                     ": this rank serves nothing");
  }
  if (!backend_->supports_weight_transfer()) return Status::ok();  // the others read the checkpoint
  EEP_ASSIGN_OR_RETURN(Placement next, placement_for(assign));
  const std::string& self = current_->assign.members[current_->assign.rank];
  EEP_ASSIGN_OR_RETURN(
      std::optional<WeightTransferPlan> plan,
      plan_weight_transfer(assign, self, next, backend_->dense_piece_bytes(),
                           backend_->expert_piece_bytes(), options_.weight_transfer_chunk_bytes));
  if (!plan || !plan->over_previous_group || !plan->is_leaving_rank()) {
    return error(ErrorCode::kInvalidArgument,
                 "handover to generation " + std::to_string(assign.generation) +
                     ": this rank is not a leaving rank of a scale-down");
  }
  auto handover = std::make_unique<Generation>();
  handover->assign = assign;
  handover->transfer = std::move(plan);
  next_ = std::move(handover);
  advance(NextGenerationStage::kReadyToSend,
          "generation " + std::to_string(assign.generation) + " goes on without this rank");
  transfer_wake_ = true;
  EEP_LOG_INFO("generation " << assign.generation << " goes on without this rank: handing over "
                             << "its weights in " << next_->transfer->chunks.size()
                             << " chunks between steps");
  return Status::ok();
}

void EngineCore::fill_transfer_vote(LockstepVote& vote) const {
  const bool ready = next_stage_.is(NextGenerationStage::kReadyToSend);
  const bool sending = next_stage_.is(NextGenerationStage::kSending);
  vote.transfer_blocked = next_stage_.is(NextGenerationStage::kBuilding);
  if (ready) vote.transfer_ready = next_->assign.generation;
  vote.transfer_over_current_group = (ready || sending) && next_->transfer->over_previous_group;
  vote.transferring = sending;
}

void EngineCore::transfer_step(TransferAction action) {
  if (action == TransferAction::kStart) {
    advance(NextGenerationStage::kSending, "every rank is ready to send");
    EEP_LOG_INFO("generation " << next_->assign.generation
                               << ": every serving rank is ready, sending weights in "
                               << next_->transfer->chunks.size() << " chunks");
  }
  if (action != TransferAction::kStart && action != TransferAction::kRunChunk) return;

  Generation& next = *next_;
  Status status = Status::ok();
  const std::optional<Placement>& previous = next.assign.previous_placement;
  if (next.num_chunks_done == 0 && previous && previous->phy2log != current_->placement.phy2log) {
    // Every serving rank has the same placement, so all of them fail here alike.
    status = error(ErrorCode::kFailedPrecondition,
                   "the expert placement changed since the scale began (a rebalance moved "
                   "experts); the weights cannot be paired");
  }
  if (status.is_ok()) status = run_transfer_chunk(next);
  if (status.is_ok() && next.num_chunks_done == next.transfer->chunks.size() &&
      next.transfer->is_leaving_rank()) {
    EEP_LOG_INFO("generation " << next.assign.generation << ": handed over this rank's weights in "
                               << next.report.transfer_seconds << " s (" << next.chunk_seconds
                               << " s in " << next.num_chunks_done << " chunks)");
    next_.reset();
    advance(NextGenerationStage::kHandedOver, "sent what only this rank held");
    return;
  }
  if (status.is_ok() && next.num_chunks_done == next.transfer->chunks.size()) {
    end_build_stage(next, "transfer");  // from the helper's end: the wait to start included
    status = agree_on_kv_blocks(next, blocks_->num_allocated_blocks());
    if (status.is_ok()) {
      end_build_stage(next, "kv_agree");
      status = warm_up_ep_group(next);
    }
    if (status.is_ok()) {
      end_build_stage(next, "ep_warm_up");
      EEP_LOG_INFO("generation " << next.assign.generation << " built: weights "
                                 << next.report.bytes_from_peers << " bytes from peers and "
                                 << next.report.bytes_from_checkpoint
                                 << " from the checkpoint, chunks sent in "
                                 << next.report.transfer_seconds << " s (" << next.chunk_seconds
                                 << " s in " << next.num_chunks_done << " chunks), "
                                 << next.agreed_kv_blocks << " KV blocks agreed");
      advance(NextGenerationStage::kBuilt, "weights sent and received, KV size agreed");
      return;
    }
  }
  if (!status.is_ok()) {
    // The next generation fails (its ack says why) and serving goes on. Dropping it destroys its
    // groups, so peers waiting in a chunk fail at once instead of at their timeout.
    const std::string what = "weight transfer of generation " +
                             std::to_string(next.assign.generation) + " failed at chunk " +
                             std::to_string(next.num_chunks_done) + ": " + status.to_string();
    EEP_LOG_ERROR(what);
    const bool leaving = next.transfer->is_leaving_rank();
    drop_generation(std::move(next_));
    if (leaving) {
      // A leaving rank has no ack to send: the staying ranks' chunk fails with it.
      advance(NextGenerationStage::kNone, "the handover failed");
    } else {
      build_failure_ = error(status.code(), what);
      advance(NextGenerationStage::kFailed, "a chunk failed");
    }
  }
}

Status EngineCore::run_transfer_chunk(Generation& generation) {
  const WeightTransferPlan& plan = *generation.transfer;
  EEP_CHECK(generation.num_chunks_done < plan.chunks.size());
  const Clock::time_point chunk_started = Clock::now();
  if (generation.num_chunks_done == 0) generation.transfer_started = chunk_started;
  const ChunkSchedule schedule =
      schedule_chunk(plan.chunks[generation.num_chunks_done], plan.rank, plan.num_ranks);
  // A scale-down runs over the current generation's EP group (the leaving ranks send), on the
  // engine thread between steps; otherwise over the next generation's.
  ProcessGroup* group =
      plan.over_previous_group ? current_->ep_group.get() : generation.ep_group.get();
  // A new rank has nothing installed to send (and runs on the helper thread).
  EEP_CHECK(!plan.is_new_rank() || (schedule.sends.empty() && schedule.local.empty()));
  EEP_ASSIGN_OR_RETURN(
      const uint64_t received,
      worker::run_transfer_chunk(*backend_, generation.state.get(), schedule, group));
  generation.report.bytes_from_peers += received;
  ++generation.num_chunks_done;
  generation.chunk_seconds += std::chrono::duration<double>(Clock::now() - chunk_started).count();
  generation.report.transfer_seconds =
      std::chrono::duration<double>(Clock::now() - generation.transfer_started).count();
  return Status::ok();
}

}  // namespace eep::worker
