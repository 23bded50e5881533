// The lockstep vote and decision of a step (worker/elastic/lockstep_vote.h) on plain values: the
// votes of a few ranks go through the same max-reduction as the all-reduce, and every rank's
// decision is checked, for each path the scale, transfer, handover, EPLB and switch logic takes.
#include <catch2/catch.hpp>

#include "eep/worker/elastic/lockstep_vote.h"

using namespace eep::worker;

namespace {

LockstepVote idle_vote(uint64_t epoch = 3) {
  LockstepVote vote;
  vote.wake_epoch = epoch;
  return vote;
}

LocalStepState local_of(const LockstepVote& vote) {
  LocalStepState local;
  local.transfer_ready = vote.transfer_ready;
  local.transferring = vote.transferring;
  local.moving_plan = vote.moving_plan != 0;
  local.held_plan = vote.held_plan != 0;
  return local;
}

// Every rank's decision for these votes.
std::vector<StepDecision> decide_all(const std::vector<LockstepVote>& votes,
                                     std::vector<LocalStepState> locals = {}) {
  if (locals.empty()) {
    for (const LockstepVote& vote : votes) locals.push_back(local_of(vote));
  }
  const LockstepAgreement agreed = LockstepAgreement::reduce(votes);
  std::vector<StepDecision> decisions;
  for (const LocalStepState& local : locals) decisions.push_back(decide(agreed, local));
  return decisions;
}

}  // namespace

TEST_CASE("the vote encodes and decodes field by field", "[lockstep]") {
  LockstepVote vote;
  vote.has_work = true;
  vote.wake_epoch = 41;
  vote.next_generation_pending = true;
  vote.num_tokens = 17;
  vote.has_prefill = true;
  vote.switch_ready = 5;
  vote.held_plan = 8;
  vote.moving_plan = 9;
  vote.transfer_blocked = true;
  vote.transfer_ready = 6;
  vote.transfer_over_current_group = true;
  vote.transferring = true;
  const LockstepAgreement agreed = LockstepAgreement::decode(vote.encode());
  CHECK(agreed.anyone_has_work);
  CHECK(agreed.newest_wake_epoch == 41);
  CHECK(agreed.next_generation_pending);
  CHECK(agreed.max_num_tokens == 17);
  CHECK(agreed.anyone_prefills);
  CHECK(agreed.switch_ready.min == 5);
  CHECK(agreed.switch_ready.max == 5);
  CHECK(agreed.held_plan.min == 8);
  CHECK(agreed.moving_plan.max == 9);
  CHECK(agreed.transfer_blocked);
  CHECK(agreed.transfer_ready.min == 6);
  CHECK(agreed.transfer_ready.max == 6);
  CHECK_FALSE(agreed.anyone_not_ready_to_transfer);
  CHECK(agreed.transfer_over_current_group);
  CHECK(agreed.anyone_transferring);
  CHECK_FALSE(agreed.anyone_not_transferring);
}

TEST_CASE("max fields: one rank with work makes every rank step, with the step's largest shape",
          "[lockstep]") {
  LockstepVote busy = idle_vote(3);
  busy.has_work = true;
  busy.num_tokens = 12;
  busy.has_prefill = true;
  LockstepVote decoding = idle_vote(7);
  decoding.has_work = true;
  decoding.num_tokens = 2;
  const LockstepVote idle = idle_vote(5);
  for (const StepDecision& decision : decide_all({idle, busy, decoding})) {
    CHECK(decision.kind == StepKind::kForward);  // the idle rank runs a dummy batch
    CHECK(decision.num_tokens == 12);
    CHECK_FALSE(decision.decode_only);
    CHECK(decision.transfer == TransferAction::kNone);
    CHECK(decision.rebalance == RebalanceAction::kNone);
  }
  // Decode only on every rank: a graph-capturable step; at least one token of shape.
  LockstepVote one = idle_vote();
  one.has_work = true;
  one.num_tokens = 0;
  for (const StepDecision& decision : decide_all({one, idle_vote()})) {
    CHECK(decision.decode_only);
    CHECK(decision.num_tokens == 1);
  }
}

TEST_CASE("nobody has work: the fleet idles at the newest wake epoch", "[lockstep]") {
  for (const StepDecision& decision : decide_all({idle_vote(4), idle_vote(9), idle_vote(2)})) {
    CHECK(decision.kind == StepKind::kIdle);
    CHECK(decision.idle_epoch == 9);
  }
}

TEST_CASE("the switch happens when every rank holds the order for the same generation",
          "[lockstep]") {
  LockstepVote ready = idle_vote();
  ready.has_work = true;
  ready.switch_ready = 6;
  ready.next_generation_pending = true;
  LockstepVote leaving = ready;
  LocalStepState staying_local = local_of(ready);
  LocalStepState leaving_local = local_of(leaving);
  leaving_local.switch_order_leaves = true;

  SECTION("all ready: staying ranks switch, leaving ranks retire, at this same step") {
    const auto decisions =
        decide_all({ready, ready, leaving}, {staying_local, staying_local, leaving_local});
    CHECK(decisions[0].kind == StepKind::kSwitch);
    CHECK(decisions[1].kind == StepKind::kSwitch);
    CHECK(decisions[2].kind == StepKind::kRetire);
  }
  SECTION("one rank has not built it (or holds no order): nobody switches") {
    LockstepVote not_ready = ready;
    not_ready.switch_ready = 0;
    for (const StepDecision& decision : decide_all({ready, not_ready})) {
      CHECK(decision.kind == StepKind::kForward);
    }
  }
  SECTION("ranks ordered to different generations: nobody switches") {
    LockstepVote newer = ready;
    newer.switch_ready = 7;
    for (const StepDecision& decision : decide_all({ready, newer})) {
      CHECK(decision.kind == StepKind::kForward);
    }
  }
}

TEST_CASE("a weight transfer starts when every ready rank is ready for one generation",
          "[lockstep]") {
  LockstepVote sender = idle_vote();
  sender.next_generation_pending = true;
  sender.transfer_ready = 4;
  LockstepVote bystander = idle_vote();  // a serving rank with no part in the transfer

  SECTION("all ready: the ready ranks start, the others wait, nobody idles") {
    const auto decisions = decide_all({sender, sender, bystander});
    CHECK(decisions[0].transfer == TransferAction::kStart);
    CHECK(decisions[1].transfer == TransferAction::kStart);
    CHECK(decisions[2].transfer == TransferAction::kWait);
    for (const StepDecision& decision : decisions) CHECK(decision.kind == StepKind::kChunkOnly);
  }
  SECTION("with work, the chunk runs before the forward") {
    LockstepVote busy = sender;
    busy.has_work = true;
    const auto decisions = decide_all({busy, sender});
    CHECK(decisions[0].kind == StepKind::kForward);
    CHECK(decisions[0].runs_chunk());
    CHECK(decisions[1].runs_chunk());
  }
  SECTION("a rank still building holds the start back") {
    LockstepVote building = idle_vote();
    building.next_generation_pending = true;
    building.transfer_blocked = true;
    for (const StepDecision& decision : decide_all({sender, building})) {
      CHECK(decision.transfer == TransferAction::kNone);
      CHECK(decision.kind == StepKind::kIdle);
    }
  }
  SECTION("ranks ready for different generations do not start") {
    LockstepVote other = sender;
    other.transfer_ready = 5;
    for (const StepDecision& decision : decide_all({sender, other})) {
      CHECK(decision.transfer == TransferAction::kNone);
    }
  }
  SECTION("over the serving group (a handover), every rank of it must be ready") {
    LockstepVote handing = sender;
    handing.transfer_over_current_group = true;
    for (const StepDecision& decision : decide_all({handing, handing, bystander})) {
      CHECK(decision.transfer == TransferAction::kNone);
    }
    const auto all = decide_all({handing, handing});
    CHECK(all[0].transfer == TransferAction::kStart);
    CHECK(all[1].transfer == TransferAction::kStart);
  }
  SECTION("a moving rebalance plan holds the start back") {
    LockstepVote moving = sender;
    moving.moving_plan = 3;
    const auto decisions = decide_all({sender, moving});
    CHECK(decisions[0].transfer == TransferAction::kNone);
    CHECK(decisions[1].rebalance == RebalanceAction::kStop);  // the other rank does not move it
  }
}

TEST_CASE("a running transfer: a chunk every step on the senders, until they are done",
          "[lockstep]") {
  LockstepVote running = idle_vote();
  running.next_generation_pending = true;
  running.transferring = true;
  LockstepVote done = idle_vote();  // finished its chunks, or takes no part
  done.next_generation_pending = true;
  const auto decisions = decide_all({running, done});
  CHECK(decisions[0].transfer == TransferAction::kRunChunk);
  CHECK(decisions[1].transfer == TransferAction::kWait);
  for (const StepDecision& decision : decisions) CHECK(decision.kind == StepKind::kChunkOnly);

  SECTION("over the serving group, a rank that stopped (rolled back) stops every chunk") {
    LockstepVote over = running;
    over.transfer_over_current_group = true;
    for (const StepDecision& decision : decide_all({over, done})) {
      CHECK(decision.transfer == TransferAction::kWait);
      CHECK_FALSE(decision.runs_chunk());
    }
  }
}

TEST_CASE("a rebalance plan moves when every rank holds it and nothing else runs", "[lockstep]") {
  LockstepVote holding = idle_vote();
  holding.held_plan = 11;
  SECTION("all hold it: every rank starts, and moves even without work") {
    for (const StepDecision& decision : decide_all({holding, holding})) {
      CHECK(decision.rebalance == RebalanceAction::kStart);
      CHECK(decision.kind == StepKind::kMovesOnly);
    }
  }
  SECTION("different plans, or a rank without one: nobody starts") {
    LockstepVote newer = holding;
    newer.held_plan = 12;
    for (const StepDecision& decision : decide_all({holding, newer})) {
      CHECK(decision.rebalance == RebalanceAction::kNone);
    }
    const auto decisions = decide_all({holding, idle_vote()});
    CHECK(decisions[0].rebalance == RebalanceAction::kNone);
  }
  SECTION("a next generation pending anywhere holds the plan back") {
    LockstepVote scaling = holding;
    scaling.next_generation_pending = true;
    for (const StepDecision& decision : decide_all({holding, scaling})) {
      CHECK(decision.rebalance == RebalanceAction::kNone);
    }
  }
  SECTION("moving: continue while every rank moves it, stop when one stopped") {
    LockstepVote moving = idle_vote();
    moving.moving_plan = 11;
    moving.has_work = true;
    for (const StepDecision& decision : decide_all({moving, moving})) {
      CHECK(decision.rebalance == RebalanceAction::kContinue);
      CHECK(decision.kind == StepKind::kForward);
      CHECK(decision.moves_layers());
    }
    LockstepVote stopped = idle_vote();
    stopped.has_work = true;
    const auto decisions = decide_all({moving, stopped});
    CHECK(decisions[0].rebalance == RebalanceAction::kStop);
    CHECK_FALSE(decisions[0].moves_layers());
    CHECK(decisions[1].rebalance == RebalanceAction::kNone);
  }
}
