// Faults during a benchmark (--kill-at / --kill-rank / --kill-signal): which worker each fault
// hit, when the coordinator had recovered and when the fleet was back at its target size, as its
// status reports them, and how serving went before, during and after, over the request records
// (scaling.h's windows).
//
// Triggers at the same time make one fault (two ranks killed at once). Windows of a fault:
//   before: from the previous fault's end (the start for the first) to the signal;
//   during: from the signal to the recovery (status shows one more recovery than before it);
//   after:  from the recovery to the next fault, or the end of the run.
// The longest token gap of "during" is the pause a streaming client saw.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eep/bench/scaling.h"
#include "eep/common/status.h"

namespace eep::bench {

// One --kill-at / --kill-rank pair (with its --kill-signal, KILL by default).
struct FaultTrigger {
  double at_s = 0;
  int rank = 0;    // of the generation live at at_s
  int signal = 9;  // SIGKILL or SIGSTOP
};

// Pairs the flags in order and sorts by time. `signals` is empty (every fault KILL), one name
// for all, or one per --kill-at. Errors: counts differ, a time < 0, a rank < 0, a signal other
// than KILL or STOP, faults without an admin endpoint.
Result<std::vector<FaultTrigger>> make_fault_triggers(const std::string& admin,
                                                      const std::vector<double>& at_s,
                                                      const std::vector<int>& ranks,
                                                      const std::vector<std::string>& signals);

// A signal sent to one worker.
struct FaultTarget {
  int rank = -1;
  int signal = 0;
  std::string worker_id;  // empty when no ACTIVE worker had the rank
  int64_t pid = 0;
};

// What one fault (triggers at one time) did. Times in seconds since the run started; -1 where it
// did not happen.
struct FaultRecord {
  double at_s = 0;
  std::vector<FaultTarget> targets;
  double signal_s = -1;        // the signals were sent
  double recovered_s = -1;     // status first showed the recovery (a newer generation serving)
  double back_to_size_s = -1;  // ... and then the target size with no scale running
  double coordinator_recovery_s = 0;  // the coordinator's own measure (health.last_recovery_s)
  int64_t generation_before = -1;
  int64_t generation_after = -1;
  std::string error;  // why no signal was sent, or why the outcome is unknown
  std::optional<ScaleWindows> windows;
};

// Fills `windows` of every fault whose signals were sent (see the top of this file).
void attach_fault_windows(std::vector<FaultRecord>& faults,
                          const std::vector<RequestRecord>& records, double run_end_s);

// The block eep-bench prints under the result table; empty when there were no faults.
std::string format_faults(const std::vector<FaultRecord>& faults);
nlohmann::json to_json(const std::vector<FaultRecord>& faults);

}  // namespace eep::bench
