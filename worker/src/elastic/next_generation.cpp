#include "eep/worker/elastic/next_generation.h"

#include <algorithm>
#include <array>
#include <string>

#include "eep/common/log.h"

namespace eep::worker {
namespace {

using Stage = NextGenerationStage;

struct Transition {
  Stage from;
  Stage to;
};

// The whole table (next_generation.h draws it).
constexpr std::array kTransitions = {
    Transition{Stage::kNone, Stage::kBuilding},
    Transition{Stage::kNone, Stage::kReadyToSend},  // a leaving rank's handover
    Transition{Stage::kNone, Stage::kRetired},      // leaves without a handover
    Transition{Stage::kBuilding, Stage::kBuilt},
    Transition{Stage::kBuilding, Stage::kReadyToSend},
    Transition{Stage::kBuilding, Stage::kNone},  // failed, or abandoned
    Transition{Stage::kReadyToSend, Stage::kSending},
    Transition{Stage::kReadyToSend, Stage::kNone},  // abandoned
    Transition{Stage::kSending, Stage::kBuilt},
    Transition{Stage::kSending, Stage::kHandedOver},
    Transition{Stage::kSending, Stage::kFailed},
    Transition{Stage::kSending, Stage::kNone},  // abandoned, or a leaving rank's chunk failed
    Transition{Stage::kBuilt, Stage::kNone},    // switched to it, or abandoned
    Transition{Stage::kHandedOver, Stage::kRetired},
    Transition{Stage::kHandedOver, Stage::kNone},  // abandoned
    Transition{Stage::kFailed, Stage::kNone},      // reported, or abandoned
};

}  // namespace

std::string_view to_string(NextGenerationStage stage) {
  switch (stage) {
    case Stage::kNone:
      return "NONE";
    case Stage::kBuilding:
      return "BUILDING";
    case Stage::kReadyToSend:
      return "READY_TO_SEND";
    case Stage::kSending:
      return "SENDING";
    case Stage::kBuilt:
      return "BUILT";
    case Stage::kHandedOver:
      return "HANDED_OVER";
    case Stage::kFailed:
      return "FAILED";
    case Stage::kRetired:
      return "RETIRED";
  }
  return "UNKNOWN";
}

bool is_legal_transition(NextGenerationStage from, NextGenerationStage to) {
  return std::any_of(kTransitions.begin(), kTransitions.end(),
                     [&](const Transition& t) { return t.from == from && t.to == to; });
}

Status NextGenerationLifecycle::transition(NextGenerationStage to, std::string_view cause) {
  if (to == stage_) return Status::ok();
  if (!is_legal_transition(stage_, to)) {
    return error(ErrorCode::kFailedPrecondition,
                 "next generation: no transition " + std::string(to_string(stage_)) + " -> " +
                     std::string(to_string(to)) + " (" + std::string(cause) + ")");
  }
  EEP_LOG_INFO("next generation: " << to_string(stage_) << " -> " << to_string(to) << " (" << cause
                                   << ")");
  stage_ = to;
  return Status::ok();
}

}  // namespace eep::worker
