// EngineCore's part of a scale's weight transfer (docs/weight_transfer.md): the ranks of the
// next generation that serve now send and copy their installed weights between two of their
// steps, a chunk per step, while the new ranks receive on their helper thread.
//
// When: every rank of the current generation that takes part becomes "ready" once it can run
// chunk 0: a rank of g+1 once its helper thread has built g+1's groups and buffers and every
// member has (a barrier on g+1's control group); a leaving rank of a scale-down once it holds its
// handover plan. The lockstep all-reduce carries seven fields: [blocked (building the next
// generation, not ready yet), ready generation, -ready generation (the lowest value on a rank
// that takes no part), not ready (1 on every rank that is not ready, taking part or not), over
// this generation's group (the plan's chunks run over g's EP group, which every rank of g must
// then join), transferring, not transferring]. At the first step at which nobody is blocked,
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
#include <limits>

#include "eep/common/log.h"
#include "eep/worker/engine_core.h"

namespace eep::worker {
namespace {

enum TransferField {
  kBlocked = 0,
  kReady = 1,
  kReadyNegated = 2,
  kNotReady = 3,
  kOverCurrentGroup = 4,
  kTransferring = 5,
  kNotTransferring = 6,
};

}  // namespace

BuildReport EngineCore::build_report() const {
  return built_ ? built_->report : BuildReport{};
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
  transferring_ = std::move(handover);
  transfer_wake_ = true;
  EEP_LOG_INFO("generation " << assign.generation << " goes on without this rank: handing over "
                             << "its weights in " << transferring_->transfer->chunks.size()
                             << " chunks between steps");
  return Status::ok();
}

void EngineCore::fill_transfer_fields(int64_t* fields) const {
  const bool ready = transferring_ && !transfer_running_;
  const int64_t generation = ready ? transferring_->assign.generation : 0;
  fields[kBlocked] = building_.valid() ? 1 : 0;
  fields[kReady] = generation;
  fields[kReadyNegated] = ready ? -generation : std::numeric_limits<int64_t>::min();
  fields[kNotReady] = ready ? 0 : 1;
  fields[kOverCurrentGroup] =
      (ready || transfer_running_) && transferring_->transfer->over_previous_group ? 1 : 0;
  fields[kTransferring] = transfer_running_ ? 1 : 0;
  fields[kNotTransferring] = transfer_running_ ? 0 : 1;
}

bool EngineCore::transfer_step(const int64_t* reduced, bool plan_moving) {
  const bool running_anywhere = reduced[kTransferring] != 0;
  const bool starts = !running_anywhere && !plan_moving && reduced[kBlocked] == 0 &&
                      reduced[kReady] > 0 && reduced[kReady] == -reduced[kReadyNegated] &&
                      (reduced[kOverCurrentGroup] == 0 || reduced[kNotReady] == 0);
  if (!starts && !running_anywhere) return false;
  if (running_anywhere && reduced[kOverCurrentGroup] != 0 && reduced[kNotTransferring] != 0) {
    return false;  // a rank of g stopped: no chunk over g's group (header comment)
  }
  if (starts && transferring_ && transferring_->assign.generation == reduced[kReady]) {
    transfer_running_ = true;
    EEP_LOG_INFO("generation " << transferring_->assign.generation
                               << ": every serving rank is ready, sending weights in "
                               << transferring_->transfer->chunks.size() << " chunks");
  }
  if (!transfer_running_) return true;

  Generation& next = *transferring_;
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
    transfer_running_ = false;
    transferring_.reset();
    return true;
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
      transfer_running_ = false;
      built_ = std::move(transferring_);
      return true;
    }
  }
  if (!status.is_ok()) {
    // The next generation fails (its ack says why) and serving goes on. Dropping it destroys its
    // groups, so peers waiting in a chunk fail at once instead of at their timeout.
    const std::string what = "weight transfer of generation " +
                             std::to_string(next.assign.generation) + " failed at chunk " +
                             std::to_string(next.num_chunks_done) + ": " + status.to_string();
    EEP_LOG_ERROR(what);
    transfer_running_ = false;
    const bool leaving = next.transfer->is_leaving_rank();
    drop_generation(std::move(transferring_));
    // A leaving rank has no ack to send: the staying ranks' chunk fails with it.
    if (!leaving) build_failure_ = error(status.code(), what);
  }
  return true;
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
