// The worker's half of a scale: the lifecycle of the next generation on this rank (the
// coordinator's half is ScaleFsm; both diagrams are in docs/scaling.md, "The worker's side").
//
//   kNone --begin_generation--> kBuilding --built by the helper thread--> kBuilt
//                                   |  \--its weights come from this rank's--> kReadyToSend
//                                   \--failed--> kNone (the error is reported at once)
//   kNone --begin_weight_handover (a leaving rank of a scale-down)--> kReadyToSend
//   kReadyToSend --every rank ready (the lockstep)--> kSending --last chunk--> kBuilt
//                                                        |   \--last chunk, leaving--> kHandedOver
//                                                        \--a chunk failed--> kFailed --reported-->
//                                                        kNone
//   kBuilt --the agreed switch step--> kNone (it is now the current generation)
//   kNone, kHandedOver --the agreed switch step, leaving--> kRetired (final)
//   any stage but kRetired --abandoned (rolled back or replaced by a newer assignment)--> kNone
//
// The coordinator's switch order (protocol::Switch) is held beside the stage, not as one: it may
// reach a rank whose stage is still kBuilding (its ack and the order crossed), and the switch
// happens at the step at which every rank holds the order and can (LockstepVote::switch_ready).
#pragma once

#include <string_view>

#include "eep/common/status.h"

namespace eep::worker {

enum class NextGenerationStage {
  kNone,         // no next generation (or this rank's is the current one now)
  kBuilding,     // the helper thread builds groups, buffers and weights
  kReadyToSend,  // built but for the weights this rank sends; waits for every rank to be ready
  kSending,      // a chunk every step until the plan is done (engine thread)
  kBuilt,        // built and its KV size agreed: acked, waits for the switch
  kHandedOver,   // a leaving rank sent what only it held: waits for the switch without it
  kFailed,       // the transfer failed on the engine thread: the error waits to be reported
  kRetired,      // this rank left at the switch; it steps no more
};
std::string_view to_string(NextGenerationStage stage);

bool is_legal_transition(NextGenerationStage from, NextGenerationStage to);

// The stage, changed only through the transition table. One thread (the engine's) uses it.
class NextGenerationLifecycle {
 public:
  NextGenerationStage stage() const { return stage_; }
  bool is(NextGenerationStage stage) const { return stage_ == stage; }
  // A next generation is on its way: building, sending or receiving weights, or built.
  bool pending() const {
    return stage_ == NextGenerationStage::kBuilding ||
           stage_ == NextGenerationStage::kReadyToSend || stage_ == NextGenerationStage::kSending ||
           stage_ == NextGenerationStage::kBuilt;
  }
  // Moves to `to`, logged with its cause at info level; kFailedPrecondition (and no change) when
  // the table has no such transition. A move to the same stage is a no-op.
  Status transition(NextGenerationStage to, std::string_view cause);

 private:
  NextGenerationStage stage_ = NextGenerationStage::kNone;
};

}  // namespace eep::worker
