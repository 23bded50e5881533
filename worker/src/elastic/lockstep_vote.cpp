#include "eep/worker/elastic/lockstep_vote.h"

#include <algorithm>

namespace eep::worker {
namespace {

// The layout of the encoded vote: one place, read by encode() and decode() alike.
enum Field : size_t {
  kHasWork,
  kWakeEpoch,
  kNextGenerationPending,
  kNumTokens,
  kHasPrefill,
  kSwitchReady,
  kSwitchReadyNegated,
  kHeldPlan,
  kHeldPlanNegated,
  kMovingPlan,
  kMovingPlanNegated,
  kTransferBlocked,
  kTransferReady,
  kTransferReadyNegated,  // INT64_MIN on a rank that is not ready: no vote for the min
  kNotReadyToTransfer,
  kTransferOverCurrentGroup,
  kTransferring,
  kNotTransferring,
  kNumFields,
};
static_assert(kNumFields == LockstepVote::kNumFields);

constexpr int64_t kNoVote = std::numeric_limits<int64_t>::min();

VoteRange range(const std::array<int64_t, kNumFields>& reduced, Field max, Field negated_max) {
  return VoteRange{-reduced[negated_max], reduced[max]};
}

}  // namespace

std::array<int64_t, LockstepVote::kNumFields> LockstepVote::encode() const {
  std::array<int64_t, kNumFields> fields{};
  fields[kHasWork] = has_work ? 1 : 0;
  fields[kWakeEpoch] = static_cast<int64_t>(wake_epoch);
  fields[kNextGenerationPending] = next_generation_pending ? 1 : 0;
  fields[kNumTokens] = num_tokens;
  fields[kHasPrefill] = has_prefill ? 1 : 0;
  fields[kSwitchReady] = switch_ready;
  fields[kSwitchReadyNegated] = -switch_ready;
  fields[kHeldPlan] = held_plan;
  fields[kHeldPlanNegated] = -held_plan;
  fields[kMovingPlan] = moving_plan;
  fields[kMovingPlanNegated] = -moving_plan;
  fields[kTransferBlocked] = transfer_blocked ? 1 : 0;
  fields[kTransferReady] = transfer_ready.value_or(0);
  fields[kTransferReadyNegated] = transfer_ready ? -*transfer_ready : kNoVote;
  fields[kNotReadyToTransfer] = transfer_ready ? 0 : 1;
  fields[kTransferOverCurrentGroup] = transfer_over_current_group ? 1 : 0;
  fields[kTransferring] = transferring ? 1 : 0;
  fields[kNotTransferring] = transferring ? 0 : 1;
  return fields;
}

LockstepAgreement LockstepAgreement::decode(const std::array<int64_t, kNumFields>& reduced) {
  LockstepAgreement agreed;
  agreed.anyone_has_work = reduced[kHasWork] != 0;
  agreed.newest_wake_epoch = static_cast<uint64_t>(reduced[kWakeEpoch]);
  agreed.next_generation_pending = reduced[kNextGenerationPending] != 0;
  agreed.max_num_tokens = reduced[kNumTokens];
  agreed.anyone_prefills = reduced[kHasPrefill] != 0;
  agreed.switch_ready = range(reduced, kSwitchReady, kSwitchReadyNegated);
  agreed.held_plan = range(reduced, kHeldPlan, kHeldPlanNegated);
  agreed.moving_plan = range(reduced, kMovingPlan, kMovingPlanNegated);
  agreed.transfer_blocked = reduced[kTransferBlocked] != 0;
  agreed.transfer_ready.max = reduced[kTransferReady];
  agreed.transfer_ready.min = reduced[kTransferReadyNegated] == kNoVote
                                  ? std::numeric_limits<int64_t>::max()
                                  : -reduced[kTransferReadyNegated];
  agreed.anyone_not_ready_to_transfer = reduced[kNotReadyToTransfer] != 0;
  agreed.transfer_over_current_group = reduced[kTransferOverCurrentGroup] != 0;
  agreed.anyone_transferring = reduced[kTransferring] != 0;
  agreed.anyone_not_transferring = reduced[kNotTransferring] != 0;
  return agreed;
}

LockstepAgreement LockstepAgreement::reduce(const std::vector<LockstepVote>& votes) {
  std::array<int64_t, kNumFields> reduced;
  reduced.fill(std::numeric_limits<int64_t>::min());
  for (const LockstepVote& vote : votes) {
    const auto fields = vote.encode();
    for (size_t i = 0; i < kNumFields; ++i) reduced[i] = std::max(reduced[i], fields[i]);
  }
  return decode(reduced);
}

std::string_view to_string(StepKind kind) {
  switch (kind) {
    case StepKind::kSwitch:
      return "switch";
    case StepKind::kRetire:
      return "retire";
    case StepKind::kIdle:
      return "idle";
    case StepKind::kChunkOnly:
      return "chunk only";
    case StepKind::kMovesOnly:
      return "moves only";
    case StepKind::kForward:
      return "forward";
  }
  return "unknown";
}

std::string_view to_string(TransferAction action) {
  switch (action) {
    case TransferAction::kNone:
      return "none";
    case TransferAction::kWait:
      return "wait";
    case TransferAction::kStart:
      return "start";
    case TransferAction::kRunChunk:
      return "run chunk";
  }
  return "unknown";
}

std::string_view to_string(RebalanceAction action) {
  switch (action) {
    case RebalanceAction::kNone:
      return "none";
    case RebalanceAction::kStart:
      return "start";
    case RebalanceAction::kContinue:
      return "continue";
    case RebalanceAction::kStop:
      return "stop";
  }
  return "unknown";
}

namespace {

// The weight transfer of a scale (engine_weight_transfer.cpp's header comment says why each
// condition is there).
TransferAction decide_transfer(const LockstepAgreement& agreed, const LocalStepState& local) {
  const bool running_anywhere = agreed.anyone_transferring;
  const bool plan_moving = agreed.moving_plan.max != 0;
  const bool starts = !running_anywhere && !plan_moving && !agreed.transfer_blocked &&
                      agreed.transfer_ready.max > 0 && agreed.transfer_ready.unanimous() &&
                      (!agreed.transfer_over_current_group || !agreed.anyone_not_ready_to_transfer);
  if (!starts && !running_anywhere) return TransferAction::kNone;
  // A rank of g stopped: no chunk over g's group, whose next MoE exchange it would meet.
  if (running_anywhere && agreed.transfer_over_current_group && agreed.anyone_not_transferring) {
    return TransferAction::kWait;
  }
  if (starts && local.transfer_ready == agreed.transfer_ready.max) return TransferAction::kStart;
  return local.transferring ? TransferAction::kRunChunk : TransferAction::kWait;
}

RebalanceAction decide_rebalance(const LockstepAgreement& agreed, const LocalStepState& local) {
  if (local.moving_plan) {
    // Every rank started the plan at the same step and moves the same layers per step, so a
    // rank without it stopped: its move failed.
    return agreed.moving_plan.unanimous() ? RebalanceAction::kContinue : RebalanceAction::kStop;
  }
  const bool others_busy = agreed.moving_plan.max != 0 || agreed.next_generation_pending;
  if (!local.held_plan || others_busy || !agreed.held_plan.unanimous()) {
    return RebalanceAction::kNone;
  }
  return RebalanceAction::kStart;  // every rank holds this plan and nobody moves another one
}

}  // namespace

StepDecision decide(const LockstepAgreement& agreed, const LocalStepState& local) {
  StepDecision decision;
  if (agreed.switch_ready.max != 0 && agreed.switch_ready.unanimous()) {
    // Every rank holds the order and has built the generation (or leaves it).
    decision.kind = local.switch_order_leaves ? StepKind::kRetire : StepKind::kSwitch;
    return decision;
  }
  decision.transfer = decide_transfer(agreed, local);
  decision.rebalance = decide_rebalance(agreed, local);
  const bool moves = decision.moves_layers();
  if (!agreed.anyone_has_work) {
    if (decision.transfer != TransferAction::kNone && !moves) {
      decision.kind = StepKind::kChunkOnly;
    } else if (!moves) {
      decision.kind = StepKind::kIdle;
      decision.idle_epoch = agreed.newest_wake_epoch;
    } else {
      decision.kind = StepKind::kMovesOnly;
    }
    return decision;
  }
  decision.kind = StepKind::kForward;
  decision.num_tokens = std::max<int64_t>(agreed.max_num_tokens, 1);
  decision.decode_only = !agreed.anyone_prefills;
  return decision;
}

}  // namespace eep::worker
