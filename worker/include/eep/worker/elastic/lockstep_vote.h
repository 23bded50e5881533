// The lockstep agreement of one step (DESIGN.md section 5, "Step lockstep"; docs/serving.md):
// before each step every rank of a generation votes, the votes go through one small all-reduce
// (max) on the control group, and every rank takes the same decision from the result.
//
// LockstepVote is one rank's vote, with named fields; encode() lays it out as int64s and
// LockstepAgreement::decode() reads the reduced array back. A field agreed as a range (the
// smallest and the largest vote, "min == max" meaning every rank voted alike) travels twice, the
// second time negated (the max of -x is -min x). decide() is the whole decision, a pure function
// of the agreement and of what this rank holds, so every path of the scale, transfer, handover,
// EPLB and switch logic is unit-tested on plain values (tests/unit/test_lockstep_vote.cpp).
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>
#include <vector>

namespace eep::worker {

// A value every rank votes on, agreed as the smallest and the largest vote.
struct VoteRange {
  int64_t min = 0;
  int64_t max = 0;
  bool unanimous() const { return min == max; }
};

// One rank's vote. Generations and plan keys are positive; 0 means "none".
struct LockstepVote {
  // Agreed as the largest vote of any rank.
  bool has_work = false;                 // requests to schedule
  uint64_t wake_epoch = 0;               // the newest wake this rank saw
  bool next_generation_pending = false;  // building, transferring, built or ordered
  int64_t num_tokens = 0;                // tokens this rank schedules in this step
  bool has_prefill = false;              // a chunk of more than one token
  // Agreed as ranges.
  int64_t switch_ready = 0;  // the generation this rank was ordered to switch to (or leave for)
                             // and can (built it, or leaves); 0 otherwise
  int64_t held_plan = 0;     // the rebalance plan this rank holds, plan_key(); 0 for none
  int64_t moving_plan = 0;   // the plan it moves layers of; 0 for none
  // The weight transfer of a scale (engine_weight_transfer.cpp).
  bool transfer_blocked = false;  // still building the next generation: not ready yet
  // The generation this rank is ready to send weights to (or hand over for); nullopt when it is
  // not ready. Agreed over the ready ranks only: the others vote 0 for the max and nothing for
  // the min.
  std::optional<int64_t> transfer_ready;
  bool transfer_over_current_group = false;  // its chunks run over the serving generation's group
  bool transferring = false;                 // runs a chunk every step until the plan is done

  static constexpr size_t kNumFields = 18;
  std::array<int64_t, kNumFields> encode() const;
};

// The reduced votes of every rank.
struct LockstepAgreement {
  bool anyone_has_work = false;
  uint64_t newest_wake_epoch = 0;
  bool next_generation_pending = false;
  int64_t max_num_tokens = 0;
  bool anyone_prefills = false;
  VoteRange switch_ready;
  VoteRange held_plan;
  VoteRange moving_plan;
  bool transfer_blocked = false;
  // Over the ready ranks: max 0 and min INT64_MAX when none is ready.
  VoteRange transfer_ready;
  bool anyone_not_ready_to_transfer = false;
  bool transfer_over_current_group = false;
  bool anyone_transferring = false;
  bool anyone_not_transferring = false;

  static LockstepAgreement decode(const std::array<int64_t, LockstepVote::kNumFields>& reduced);
  // What the all-reduce (max over ranks of the encoded votes) makes of `votes`: for tests and
  // for a generation of one rank.
  static LockstepAgreement reduce(const std::vector<LockstepVote>& votes);
};

// What this rank holds, as far as the decision goes.
struct LocalStepState {
  bool switch_order_leaves = false;  // the switch order this rank holds retires it
  bool moving_plan = false;          // moving a rebalance plan's layers
  bool held_plan = false;            // holding one that has not started
  // The generation this rank is ready to send to (a plan waits for the fleet); nullopt if none.
  std::optional<int64_t> transfer_ready;
  bool transferring = false;  // already sends a chunk every step
};

enum class StepKind {
  kSwitch,     // every rank switches to the next generation at this step
  kRetire,     // every rank switches; this one is not in the next generation
  kIdle,       // nobody has work: the fleet waits for a wake above the agreed epoch
  kChunkOnly,  // only a weight-transfer chunk (or its wait) this step
  kMovesOnly,  // only EPLB layer moves this step
  kForward,    // the forward step (a dummy batch on a rank without work), after any chunk/moves
};
std::string_view to_string(StepKind kind);

enum class TransferAction {
  kNone,      // no transfer anywhere
  kWait,      // a transfer is under way or starting in the fleet, but this rank runs no chunk
  kStart,     // every rank is ready: this rank starts and runs its first chunk
  kRunChunk,  // this rank runs its next chunk
};
std::string_view to_string(TransferAction action);

enum class RebalanceAction {
  kNone,
  kStart,     // every rank holds the plan and nobody is busy: move its first layers
  kContinue,  // every rank still moves the plan: move the next layers
  kStop,      // another rank stopped moving (its move failed): end the plan with an error
};
std::string_view to_string(RebalanceAction action);

struct StepDecision {
  StepKind kind = StepKind::kForward;
  TransferAction transfer = TransferAction::kNone;
  RebalanceAction rebalance = RebalanceAction::kNone;
  uint64_t idle_epoch = 0;  // kIdle: wait for a wake above it
  int64_t num_tokens = 1;   // kForward: the step's shape, the same on every rank
  bool decode_only = true;  // kForward: no rank prefills
  bool moves_layers() const {
    return rebalance == RebalanceAction::kStart || rebalance == RebalanceAction::kContinue;
  }
  bool runs_chunk() const {
    return transfer == TransferAction::kStart || transfer == TransferAction::kRunChunk;
  }
};

// The decision of every rank at this step: the same `agreed` on every rank gives the same kind,
// the same rebalance action and the same step shape everywhere.
StepDecision decide(const LockstepAgreement& agreed, const LocalStepState& local);

}  // namespace eep::worker
