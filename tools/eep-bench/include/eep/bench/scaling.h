// Scales during a benchmark (--scale-at / --scale-to): what each scale did, as the coordinator's
// status reports it, and how serving went before, during and after it, as pure functions over
// the request records so that the window arithmetic is unit-tested on synthetic timelines.
//
// Windows of one scale that the coordinator accepted (all times seconds since the run started):
//   before: from the previous accepted scale's outcome (the start for the first) to the command;
//   during: from the command to the outcome (status shows succeeded or failed);
//   after:  from the outcome to the next accepted scale's command, or the end of the run.
// A token belongs to the window it arrived in; an inter-token gap to the window its second token
// arrived in; a request's completion or failure to the window of its end. The longest gap of a
// window is over every pair of consecutive tokens of one streamed request whose interval
// overlaps the window: a stream stalled across the switch shows up in "during" even when its
// next token came after the outcome.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eep/bench/stats.h"
#include "eep/common/protocol.h"
#include "eep/common/status.h"

namespace eep::bench {

// One --scale-at / --scale-to pair.
struct ScaleTrigger {
  double at_s = 0;  // seconds after the benchmark start
  int dp = 0;       // the fleet size to ask for
};

// Pairs the flags in order (the i-th --scale-at with the i-th --scale-to) and sorts the pairs by
// time. Errors: counts differ, a time < 0, a size < 1, scales without an admin endpoint.
Result<std::vector<ScaleTrigger>> make_scale_triggers(const std::string& admin,
                                                      const std::vector<double>& scale_at_s,
                                                      const std::vector<int>& scale_to);

enum class ScaleOutcome {
  kSucceeded,  // status showed the target generation succeeded
  kFailed,     // ... failed (rolled back); `reason` says why
  kRefused,    // the coordinator answered the scale command with an error (e.g. one running)
  kUnchanged,  // the fleet already had that size
  kNotSent,    // the requests ended before the trigger's time
  kUnknown,    // no answer, or no outcome within the wait; `reason` says which
};
const char* to_string(ScaleOutcome outcome);

// Serving in one window [begin_s, end_s).
struct WindowMetrics {
  double begin_s = 0;
  double end_s = 0;
  int64_t num_completed = 0;     // successful requests that ended in the window
  int64_t num_failed = 0;        // failed requests that ended in the window
  double output_tokens = 0;      // tokens that arrived in the window
  double output_throughput = 0;  // output_tokens / (end_s - begin_s); 0 for an empty window
  LatencyStats itl;              // gaps whose second token arrived in the window
  // The longest gap between consecutive tokens of one request overlapping the window (0 when
  // none), which request, and when its earlier token arrived.
  double longest_gap_ms = 0;
  int64_t longest_gap_request_idx = -1;
  double longest_gap_start_s = 0;
};

WindowMetrics window_metrics(const std::vector<RequestRecord>& records, double begin_s,
                             double end_s);

struct ScaleWindows {
  WindowMetrics before;
  WindowMetrics during;
  WindowMetrics after;
};

// One ACTIVE rank's part of the tokens generated after a scale (from its outcome to the next
// scale's command or the end of the run), from the coordinator's per-worker counts in status.
struct RankShare {
  int rank = -1;
  std::string worker_id;
  int64_t generated_tokens = 0;
  double share = 0;  // of the tokens all these ranks generated in the window
};

// The shares of the ranks ACTIVE at both ends of a window: `begin` and `end` are the `workers`
// arrays of two status replies. Ranks in rank order; empty when nothing was generated.
std::vector<RankShare> rank_shares(const nlohmann::json& begin, const nlohmann::json& end);

// What one trigger did. Times are seconds since the run started; -1 where it did not happen.
struct ScaleRecord {
  ScaleTrigger trigger;
  int from_dp = 0;         // from the coordinator's answer (0 when not accepted)
  double command_s = -1;   // the scale command was sent
  double accepted_s = -1;  // its answer arrived
  double outcome_s = -1;   // status first showed the outcome
  ScaleOutcome outcome = ScaleOutcome::kNotSent;
  std::string reason;  // failure reason, refusal message, or why unknown
  int64_t target_generation = -1;
  double total_s = 0;                             // the coordinator's elapsed_s of the scale
  std::vector<protocol::StageDuration> timeline;  // the coordinator's stages, in order
  uint64_t weight_bytes_from_peers = 0;           // summed over the new generation's ranks
  uint64_t weight_bytes_from_checkpoint = 0;
  double weight_transfer_s = 0;                       // the slowest rank's first to last chunk
  std::vector<protocol::StageDuration> build_stages;  // within WAIT_ACKS, the slowest rank's
  std::optional<ScaleWindows> windows;                // only for scales that were accepted
  std::vector<RankShare> rank_shares;                 // only for scales that succeeded

  bool accepted() const {
    return outcome == ScaleOutcome::kSucceeded || outcome == ScaleOutcome::kFailed ||
           (outcome == ScaleOutcome::kUnknown && target_generation >= 0);
  }
};

// The three windows of one event that ran from begin_s to end_s: before from the previous
// event's end, after up to the next event's beginning (empty when that is not after end_s).
ScaleWindows windows_around(const std::vector<RequestRecord>& records, double previous_end_s,
                            double begin_s, double end_s, double next_begin_s);

// Fills `windows` of every accepted scale (see the top of this file). `run_end_s`: when the last
// reply arrived; a scale whose outcome came later has an empty "after".
void attach_windows(std::vector<ScaleRecord>& scales, const std::vector<RequestRecord>& records,
                    double run_end_s);

// snprintf into a string: a line of the tables eep-bench prints (at most 255 characters).
template <typename... Args>
std::string printf_string(const char* format, Args... args) {
  char line[256];
  std::snprintf(line, sizeof(line), format, args...);
  return line;
}

// The table of the three windows (a header and a row each), as the scale and fault blocks print.
std::string format_windows(const ScaleWindows& windows);
nlohmann::json to_json(const ScaleWindows& windows);

// The block eep-bench prints under the result table; empty when there were no scales.
std::string format_scales(const std::vector<ScaleRecord>& scales);
nlohmann::json to_json(const WindowMetrics& window);
nlohmann::json to_json(const std::vector<ScaleRecord>& scales);

}  // namespace eep::bench
