// The timeline of one eep-bench run, for `--plot` and `--timeline-csv`: the serving series in
// fixed bins (1 s or finer) and the scales and faults as events with their stages, all pure
// functions over the records so that the arithmetic is unit-tested without a server.
//
// A bin [begin_s, end_s) holds, with the definitions of the scale windows (scaling.h):
//   output tokens: tokens that arrived in the bin, and their rate over the bin's width;
//   running requests: the mean number of requests in flight over the bin (sent -> reply complete,
//     each weighted by the part of the bin it covers), so bins finer than a second stay exact;
//   ITL mean and P99: the gaps whose second token arrived in the bin;
//   longest gap: the longest gap between consecutive tokens of one request overlapping the bin,
//     so a stream stalled across several bins shows in each of them;
//   completed / failed: requests that ended in the bin.
#pragma once

#include <string>
#include <vector>

#include "eep/bench/faults.h"
#include "eep/bench/scaling.h"
#include "eep/bench/stats.h"
#include "eep/common/status.h"

namespace eep::bench {

struct TimelineBin {
  double begin_s = 0;
  double end_s = 0;
  double output_tokens = 0;
  double output_throughput = 0;  // tokens per second of the bin
  double running_requests = 0;   // mean over the bin
  int64_t num_completed = 0;
  int64_t num_failed = 0;
  double itl_mean_ms = 0;
  double itl_p99_ms = 0;
  double longest_gap_ms = 0;
};

// Bins of `bin_s` from 0 to the end of the run (`duration_s`, or the last reply if later).
// Errors: bin_s not in (0, 1] (the plot promises 1 s or finer).
Result<std::vector<TimelineBin>> timeline_bins(const std::vector<RequestRecord>& records,
                                               double duration_s, double bin_s);

// One stage of an event, drawn as a shaded band.
struct TimelineStage {
  std::string name;  // the coordinator's stage (WAIT_ACKS, ...) or a fault's phase
  double begin_s = 0;
  double end_s = 0;
};

// A scale or a fault, drawn as a marker at `at_s` with its stages.
struct TimelineEvent {
  enum class Kind { kScale, kFault };
  Kind kind = Kind::kScale;
  double at_s = 0;    // the scale command or the signal
  std::string label;  // e.g. "scale 2->3 succeeded", "kill rank 1 (KILL)"
  std::vector<TimelineStage> stages;
};

// Scales that were sent and faults that were signalled, in time order. A scale's stages are the
// coordinator's timeline laid end to end from when the coordinator started it (its outcome minus
// its elapsed time, not before the command); a fault's are "RECOVER" (signal -> recovered) and
// "BACK_TO_SIZE" (recovered -> back at the target size), where status showed them.
std::vector<TimelineEvent> timeline_events(const std::vector<ScaleRecord>& scales,
                                           const std::vector<FaultRecord>& faults);

// One header line and one row per bin; `stage` is the stage live at the bin's start and `events`
// the markers inside the bin ("; "-separated), so the file stands alone for other plotting tools.
std::string timeline_csv(const std::vector<TimelineBin>& bins,
                         const std::vector<TimelineEvent>& events);

}  // namespace eep::bench
