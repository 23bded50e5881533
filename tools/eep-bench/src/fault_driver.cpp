#include "eep/bench/fault_driver.h"

#include <signal.h>

#include <map>

#include "eep/common/admin_client.h"

namespace eep::bench {
namespace {

constexpr std::chrono::milliseconds kReplyTimeout{5000};
// How often status is asked while a fault is followed: the recovery takes about a second.
constexpr std::chrono::milliseconds kStatusPollInterval{50};

}  // namespace

FaultDriver::FaultDriver(AdminConnection admin, std::vector<FaultTrigger> triggers,
                         BenchClock::time_point start)
    : admin_(std::move(admin)), thread_(start) {
  for (const FaultTrigger& trigger : triggers) {
    if (faults_.empty() || faults_.back().at_s != trigger.at_s) {
      faults_.push_back(FaultRecord{});
      faults_.back().at_s = trigger.at_s;
    }
    faults_.back().targets.push_back(FaultTarget{trigger.rank, trigger.signal, "", 0});
  }
  thread_.run([this] { run(); });
}

FaultDriver::~FaultDriver() {
  thread_.finish();
}

std::vector<FaultRecord> FaultDriver::finish() {
  thread_.finish();
  return std::move(faults_);
}

void FaultDriver::run() {
  AdminClient client(admin_);
  auto status = [&]() -> Result<protocol::StatusReply> {
    protocol::AdminRequest request;
    request.cmd = protocol::AdminCommand::kStatus;
    EEP_ASSIGN_OR_RETURN(nlohmann::json reply, client.call(request, kReplyTimeout));
    try {
      return reply.get<protocol::StatusReply>();
    } catch (const std::exception& e) {
      return error(ErrorCode::kInternal, std::string("unreadable status: ") + e.what());
    }
  };

  for (size_t idx = 0; idx < faults_.size(); ++idx) {
    FaultRecord& fault = faults_[idx];
    if (thread_.wait_until_or_finished(thread_.at(fault.at_s))) {
      for (size_t rest = idx; rest < faults_.size(); ++rest) {
        faults_[rest].error = "the requests ended before its time";
      }
      return;
    }
    auto before = status();
    if (!before.is_ok() || !before->health) {
      fault.error = before.is_ok() ? "status has no health (an older coordinator)"
                                   : "status: " + before.status().to_string();
      continue;
    }
    fault.generation_before = before->generation;
    const uint64_t recoveries_before = before->health->num_recoveries;
    std::map<int, const protocol::WorkerInfo*> by_rank;
    for (const protocol::WorkerInfo& worker : before->workers) {
      if (worker.state == "ACTIVE") by_rank[worker.rank] = &worker;
    }
    // Every target is looked up before any is signalled: faults at one time hit one generation.
    for (FaultTarget& target : fault.targets) {
      auto it = by_rank.find(target.rank);
      if (it == by_rank.end()) {
        fault.error += "no ACTIVE worker has rank " + std::to_string(target.rank) + "; ";
        continue;
      }
      target.worker_id = it->second->id;
      target.pid = it->second->pid;
    }
    for (const FaultTarget& target : fault.targets) {
      if (target.pid <= 0) continue;
      if (::kill(static_cast<pid_t>(target.pid), target.signal) != 0) {
        fault.error += "kill " + std::to_string(target.pid) + " failed; ";
      }
    }
    fault.signal_s = thread_.seconds_now();
    // Followed to its end even once the requests are done (bounded): the record is whole.
    const auto give_up_at = BenchClock::now() + kOutcomeWait;
    while (BenchClock::now() < give_up_at) {
      std::this_thread::sleep_for(kStatusPollInterval);
      auto now = status();
      if (!now.is_ok() || !now->health) continue;
      const double now_s = thread_.seconds_now();
      if (fault.recovered_s < 0 && now->health->num_recoveries > recoveries_before &&
          now->generation > fault.generation_before) {
        fault.recovered_s = now_s;
        fault.coordinator_recovery_s = now->health->last_recovery_s;
      }
      if (fault.recovered_s >= 0 && now->active_dp == now->health->target_dp &&
          now->scale.state != "running") {
        fault.back_to_size_s = now_s;
        fault.generation_after = now->generation;
        break;
      }
    }
    if (fault.back_to_size_s < 0) {
      fault.error += "no recovery back to the target size within " +
                     std::to_string(kOutcomeWait.count()) + " s";
    }
  }
}

}  // namespace eep::bench
