#pragma once
// Where a serving rank's forward steps spend their time (docs/profiling.md): the engine adds each
// phase's duration as the step runs, and once per interval the phases come out as milliseconds
// per step, for the log (`eep-worker --log-step-times-s`). Off when the interval is zero.
#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace eep::worker {

enum class StepPhase {
  kSchedule,  // the scheduler picks the step's chunks
  kVote,      // the lockstep agreement over the control group (waiting for slower ranks too)
  kPrepare,   // the batch's token ids and sampling specs
  kForward,   // the model: forward, sampling, tokens back to the host
  kUpdate,    // the scheduler takes the tokens; the outputs are made
  kBetween,   // from the end of the previous forward step to this one's start: the daemon sends
              // outputs, takes requests and control messages
  kCount,
};

const char* step_phase_name(StepPhase phase);

class StepTiming {
 public:
  using Clock = std::chrono::steady_clock;

  explicit StepTiming(Clock::duration interval = Clock::duration::zero()) : interval_(interval) {}

  bool enabled() const { return interval_ > Clock::duration::zero(); }
  void add(StepPhase phase, Clock::duration duration) {
    totals_[static_cast<size_t>(phase)] += duration;
  }
  // One forward step of `num_tokens` tokens has ended.
  void step_done(int64_t num_tokens) {
    ++num_steps_;
    num_tokens_ += num_tokens;
  }
  // Once `interval` has passed since the last report (or the first call), and steps ran: the line
  // to log ("N forward steps in S s, T tokens per step; ms per step: schedule ..., total ...").
  // The sums start again.
  std::optional<std::string> report(Clock::time_point now);

 private:
  Clock::duration interval_;
  std::optional<Clock::time_point> since_;
  std::array<Clock::duration, static_cast<size_t>(StepPhase::kCount)> totals_{};
  int64_t num_steps_ = 0;
  int64_t num_tokens_ = 0;
};

}  // namespace eep::worker
