#include "eep/coordinator/membership.h"

#include <algorithm>
#include <array>

#include "eep/common/text.h"

namespace eep::coordinator {
namespace {

struct Transition {
  WorkerState from;
  WorkerState to;
};

// Every legal move; anything else is refused. DEAD is final: a restarted worker registers anew.
constexpr std::array kLegalTransitions = {
    Transition{WorkerState::kSpare, WorkerState::kJoining},  // picked for the next generation
    Transition{WorkerState::kSpare, WorkerState::kLeaving},  // retired from the spare pool
    Transition{WorkerState::kSpare, WorkerState::kDead},
    Transition{WorkerState::kJoining, WorkerState::kActive},  // the switch
    Transition{WorkerState::kJoining, WorkerState::kSpare},   // the scale rolled back
    Transition{WorkerState::kJoining, WorkerState::kLeaving},
    Transition{WorkerState::kJoining, WorkerState::kDead},
    Transition{WorkerState::kActive, WorkerState::kLeaving},  // scale down
    Transition{WorkerState::kActive, WorkerState::kDead},
    Transition{WorkerState::kLeaving, WorkerState::kSpare},  // back to the pool
    Transition{WorkerState::kLeaving, WorkerState::kDead},
};

}  // namespace

bool is_legal_transition(WorkerState from, WorkerState to) {
  return std::any_of(kLegalTransitions.begin(), kLegalTransitions.end(),
                     [&](const Transition& t) { return t.from == from && t.to == to; });
}

Status Membership::add(WorkerRecord record, Clock::time_point now) {
  if (!protocol::is_valid_worker_id(record.id)) {
    return error(ErrorCode::kInvalidArgument,
                 "worker id '" + printable(record.id) + "' is not 1 to " +
                     std::to_string(protocol::kMaxWorkerIdBytes) +
                     " characters of A-Z a-z 0-9 . _ - @ : (give it a valid --worker-id)");
  }
  auto it = workers_.find(record.id);
  if (it != workers_.end() && it->second.state != WorkerState::kDead) {
    return error(ErrorCode::kAlreadyExists,
                 "worker id '" + record.id + "' is already registered (pid " +
                     std::to_string(it->second.pid) + " on " + it->second.host +
                     "); give each worker a unique --worker-id");
  }
  record.state = WorkerState::kSpare;
  record.rank = -1;
  record.generation = -1;
  record.last_heard = now;
  record.state_since = now;
  record.reason.clear();
  workers_[record.id] = std::move(record);
  return Status::ok();
}

Status Membership::transition(const std::string& id, WorkerState to, std::string reason,
                              Clock::time_point now) {
  WorkerRecord* worker = find(id);
  if (worker == nullptr) return error(ErrorCode::kNotFound, "no worker '" + id + "'");
  if (!is_legal_transition(worker->state, to)) {
    return error(ErrorCode::kFailedPrecondition,
                 "illegal transition of worker " + id + ": " +
                     std::string(protocol::to_string(worker->state)) + " -> " +
                     std::string(protocol::to_string(to)));
  }
  worker->state = to;
  worker->state_since = now;
  worker->reason = std::move(reason);
  if (to == WorkerState::kSpare || to == WorkerState::kDead) {
    worker->rank = -1;
    worker->generation = -1;
  }
  return Status::ok();
}

void Membership::remove(const std::string& id) {
  workers_.erase(id);
}

WorkerRecord* Membership::find(const std::string& id) {
  auto it = workers_.find(id);
  return it == workers_.end() ? nullptr : &it->second;
}

const WorkerRecord* Membership::find(const std::string& id) const {
  auto it = workers_.find(id);
  return it == workers_.end() ? nullptr : &it->second;
}

std::vector<const WorkerRecord*> Membership::in_state(WorkerState state) const {
  std::vector<const WorkerRecord*> result;
  for (const auto& [id, worker] : workers_) {
    if (worker.state == state) result.push_back(&worker);
  }
  return result;
}

std::vector<const WorkerRecord*> Membership::all() const {
  std::vector<const WorkerRecord*> result;
  for (const auto& [id, worker] : workers_) result.push_back(&worker);
  return result;
}

Status Membership::commit_generation(int64_t generation, const std::vector<std::string>& members,
                                     Clock::time_point now) {
  if (generation <= generation_) {
    return error(ErrorCode::kFailedPrecondition, "generation " + std::to_string(generation) +
                                                     " is not newer than " +
                                                     std::to_string(generation_));
  }
  for (const std::string& id : members) {
    const WorkerRecord* worker = find(id);
    if (worker == nullptr) return error(ErrorCode::kNotFound, "member " + id + " is unknown");
    if (worker->state != WorkerState::kJoining && worker->state != WorkerState::kActive) {
      return error(ErrorCode::kFailedPrecondition,
                   "member " + id + " is " + std::string(protocol::to_string(worker->state)) +
                       ", not JOINING or ACTIVE");
    }
  }
  for (const auto& [id, worker] : workers_) {
    if (worker.state == WorkerState::kActive &&
        std::find(members.begin(), members.end(), id) == members.end()) {
      return error(ErrorCode::kFailedPrecondition,
                   "worker " + id + " is ACTIVE but not a member of generation " +
                       std::to_string(generation));
    }
  }
  for (size_t rank = 0; rank < members.size(); ++rank) {
    WorkerRecord* worker = find(members[rank]);
    if (worker->state != WorkerState::kActive) {
      worker->state = WorkerState::kActive;
      worker->state_since = now;
    }
    worker->rank = static_cast<int>(rank);
    worker->generation = generation;
    worker->reason.clear();
  }
  generation_ = generation;
  return Status::ok();
}

std::vector<const WorkerRecord*> Membership::active_by_rank() const {
  std::vector<const WorkerRecord*> active = in_state(WorkerState::kActive);
  std::sort(active.begin(), active.end(),
            [](const WorkerRecord* a, const WorkerRecord* b) { return a->rank < b->rank; });
  return active;
}

void Membership::heard_from(const std::string& id, Clock::time_point now) {
  if (WorkerRecord* worker = find(id)) worker->last_heard = now;
}

std::vector<std::string> Membership::silent_workers(Clock::time_point now,
                                                    Clock::duration timeout) const {
  std::vector<const WorkerRecord*> silent;
  for (const auto& [id, worker] : workers_) {
    if (worker.state != WorkerState::kDead && now - worker.last_heard > timeout) {
      silent.push_back(&worker);
    }
  }
  std::sort(silent.begin(), silent.end(), [](const WorkerRecord* a, const WorkerRecord* b) {
    return a->last_heard < b->last_heard;
  });
  std::vector<std::string> ids;
  for (const WorkerRecord* worker : silent) ids.push_back(worker->id);
  return ids;
}

void Membership::prune_dead(Clock::time_point now, Clock::duration retention) {
  std::erase_if(workers_, [&](const auto& entry) {
    return entry.second.state == WorkerState::kDead && now - entry.second.state_since > retention;
  });
}

}  // namespace eep::coordinator
