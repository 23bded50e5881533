// Where requests go (docs/serving.md, "Dispatch on capacity"): pure decisions over plain values,
// used by the router. A request waits in the coordinator's queue until a rank has room for it, so
// a rank that joins at a switch takes the backlog at its first step, and after a scale-up some
// running requests move to the new ranks when the move pays for its re-prefill.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace eep::coordinator {

// A rank requests may go to, in rank order.
struct DispatchTarget {
  std::string worker_id;
  int num_assigned = 0;  // requests on it (running or waiting there), not finished
  int max_num_seqs = 0;  // what it runs at once; 0 when it did not say (older workers)
};

struct DispatchOptions {
  // Requests a rank holds beyond max_num_seqs, so that its next step finds work while the
  // coordinator hears of a finished one. -1: max(2, max_num_seqs / 4).
  int queue_depth = -1;
  // Running requests move to an emptier rank after a scale-up (move_running_plan).
  bool move_running = true;
  // A running request moves only when at least this many tokens remain (max_tokens - generated)
  // and its re-prefill (prompt + generated tokens) is at most max_reprefill_per_remaining times
  // the tokens that remain.
  int move_min_remaining = 32;
  double max_reprefill_per_remaining = 4.0;
};

// How many requests a rank may hold: max_num_seqs plus the queue depth; unbounded (INT32_MAX)
// for a rank that did not report max_num_seqs.
int dispatch_limit(const DispatchTarget& target, const DispatchOptions& options);

// The index of the target the next request goes to: the one with the most room (ties to the
// lower rank); none when every target is full (the request waits in the coordinator's queue).
std::optional<size_t> pick_target(const std::vector<DispatchTarget>& targets,
                                  const DispatchOptions& options);

// A running request that might move: where it is and what is left of it.
struct RunningRequest {
  uint64_t request_id = 0;
  size_t target_idx = 0;
  int num_prompt_tokens = 0;
  int num_generated = 0;
  int max_tokens = 0;
};

struct RunningMove {
  uint64_t request_id = 0;
  size_t from_idx = 0;
  size_t to_idx = 0;
};

// The moves that even out the ranks once the queue is empty: from ranks above the mean to ranks
// below it with room, requests with the most tokens left first, only those worth their
// re-prefill (DispatchOptions). Never moves a rank below the mean or one above it.
std::vector<RunningMove> move_running_plan(const std::vector<DispatchTarget>& targets,
                                           const std::vector<RunningRequest>& running,
                                           const DispatchOptions& options);

}  // namespace eep::coordinator
