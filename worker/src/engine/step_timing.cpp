#include "eep/worker/engine/step_timing.h"

#include <cstdio>

namespace eep::worker {

const char* step_phase_name(StepPhase phase) {
  switch (phase) {
    case StepPhase::kSchedule:
      return "schedule";
    case StepPhase::kVote:
      return "vote";
    case StepPhase::kPrepare:
      return "prepare";
    case StepPhase::kForward:
      return "forward";
    case StepPhase::kUpdate:
      return "update";
    case StepPhase::kBetween:
      return "between steps";
    case StepPhase::kCount:
      break;
  }
  return "?";
}

std::optional<std::string> StepTiming::report(Clock::time_point now) {
  if (!enabled()) return std::nullopt;
  if (!since_) since_ = now;
  if (now - *since_ < interval_ || num_steps_ == 0) return std::nullopt;
  const double seconds = std::chrono::duration<double>(now - *since_).count();
  char buffer[96];
  std::snprintf(buffer, sizeof(buffer), "%lld forward steps in %.1f s, %.1f tokens per step",
                static_cast<long long>(num_steps_), seconds,
                static_cast<double>(num_tokens_) / static_cast<double>(num_steps_));
  std::string line = std::string(buffer) + "; ms per step:";
  double total_ms = 0;
  for (size_t idx = 0; idx < totals_.size(); ++idx) {
    const double ms = std::chrono::duration<double, std::milli>(totals_[idx]).count() /
                      static_cast<double>(num_steps_);
    total_ms += ms;
    std::snprintf(buffer, sizeof(buffer), "%s %s %.3f", idx == 0 ? "" : ",",
                  step_phase_name(static_cast<StepPhase>(idx)), ms);
    line += buffer;
  }
  std::snprintf(buffer, sizeof(buffer), "; total %.3f", total_ms);
  line += buffer;
  since_ = now;
  totals_ = {};
  num_steps_ = 0;
  num_tokens_ = 0;
  return line;
}

}  // namespace eep::worker
