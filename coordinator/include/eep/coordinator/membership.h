// The membership table: every worker the coordinator knows, its state (DESIGN.md section 4) and
// its place in the current generation. Transitions are checked against one table
// (kLegalTransitions in membership.cpp); an illegal one is refused, not applied. Only the
// coordinator's event loop touches it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "eep/common/protocol.h"
#include "eep/common/status.h"

namespace eep::coordinator {

using protocol::WorkerState;
using Clock = std::chrono::steady_clock;

struct WorkerRecord {
  std::string id;
  WorkerState state = WorkerState::kSpare;
  int rank = -1;            // rank in `generation`, -1 when it has none
  int64_t generation = -1;  // the generation it serves (or joins), -1 for none
  std::string host;
  int64_t pid = 0;
  std::string device;
  int device_idx = 0;
  Clock::time_point last_heard{};
  Clock::time_point state_since{};
  std::string reason;         // why it became DEAD or LEAVING
  protocol::WorkerLoad load;  // as of its last token batch or heartbeat
};

bool is_legal_transition(WorkerState from, WorkerState to);

class Membership {
 public:
  // A worker that registered: SPARE. An id already alive is kAlreadyExists; a DEAD record of
  // the same id is replaced (the worker was restarted).
  Status add(WorkerRecord record, Clock::time_point now);
  Status transition(const std::string& id, WorkerState to, std::string reason,
                    Clock::time_point now);
  void remove(const std::string& id);

  WorkerRecord* find(const std::string& id);
  const WorkerRecord* find(const std::string& id) const;
  std::vector<const WorkerRecord*> in_state(WorkerState state) const;
  std::vector<const WorkerRecord*> all() const;

  // Makes `members` (index = rank) the ACTIVE set of `generation`: each must be JOINING or
  // ACTIVE. Members of the old generation not listed must already have left the ACTIVE state.
  Status commit_generation(int64_t generation, const std::vector<std::string>& members,
                           Clock::time_point now);
  int64_t generation() const { return generation_; }
  // ACTIVE workers ordered by rank.
  std::vector<const WorkerRecord*> active_by_rank() const;

  void heard_from(const std::string& id, Clock::time_point now);
  // Workers not heard from within timeout (and not DEAD yet), oldest first.
  std::vector<std::string> silent_workers(Clock::time_point now, Clock::duration timeout) const;
  // Drops DEAD records older than retention.
  void prune_dead(Clock::time_point now, Clock::duration retention);

 private:
  std::map<std::string, WorkerRecord> workers_;
  int64_t generation_ = 0;
};

}  // namespace eep::coordinator
