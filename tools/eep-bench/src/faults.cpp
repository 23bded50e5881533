#include "eep/bench/faults.h"

#include <signal.h>

#include <algorithm>

#include "eep/common/text.h"

namespace eep::bench {
namespace {

Result<int> signal_by_name(const std::string& name) {
  if (name == "KILL" || name == "SIGKILL" || name == "9") return SIGKILL;
  if (name == "STOP" || name == "SIGSTOP") return SIGSTOP;
  return error(ErrorCode::kInvalidArgument,
               "--kill-signal must be KILL or STOP, not '" + printable(name) + "'");
}

const char* signal_name(int signal) {
  return signal == SIGSTOP ? "STOP" : signal == SIGKILL ? "KILL" : "?";
}

}  // namespace

Result<std::vector<FaultTrigger>> make_fault_triggers(const std::string& admin,
                                                      const std::vector<double>& at_s,
                                                      const std::vector<int>& ranks,
                                                      const std::vector<std::string>& signals) {
  if (at_s.size() != ranks.size()) {
    return error(ErrorCode::kInvalidArgument, "--kill-at and --kill-rank pair up in order: got " +
                                                  std::to_string(at_s.size()) + " --kill-at and " +
                                                  std::to_string(ranks.size()) + " --kill-rank");
  }
  if (signals.size() > 1 && signals.size() != at_s.size()) {
    return error(ErrorCode::kInvalidArgument,
                 "--kill-signal is given once (for every fault) or once per --kill-at: got " +
                     std::to_string(signals.size()) + " for " + std::to_string(at_s.size()));
  }
  if (!at_s.empty() && admin.empty()) {
    return error(ErrorCode::kInvalidArgument,
                 "--kill-at needs --admin (the coordinator's admin endpoint, whose status names "
                 "each rank's worker and pid)");
  }
  std::vector<FaultTrigger> triggers;
  for (size_t idx = 0; idx < at_s.size(); ++idx) {
    if (!(at_s[idx] >= 0)) {
      return error(
          ErrorCode::kInvalidArgument,
          "--kill-at must be seconds >= 0 after the start, not " + printf_string("%g", at_s[idx]));
    }
    if (ranks[idx] < 0) {
      return error(ErrorCode::kInvalidArgument,
                   "--kill-rank must be a rank >= 0, not " + std::to_string(ranks[idx]));
    }
    FaultTrigger trigger{at_s[idx], ranks[idx], SIGKILL};
    if (!signals.empty()) {
      EEP_ASSIGN_OR_RETURN(trigger.signal,
                           signal_by_name(signals.size() == 1 ? signals[0] : signals[idx]));
    }
    triggers.push_back(trigger);
  }
  std::stable_sort(triggers.begin(), triggers.end(),
                   [](const FaultTrigger& a, const FaultTrigger& b) { return a.at_s < b.at_s; });
  return triggers;
}

void attach_fault_windows(std::vector<FaultRecord>& faults,
                          const std::vector<RequestRecord>& records, double run_end_s) {
  std::vector<FaultRecord*> sent;
  for (FaultRecord& fault : faults) {
    fault.windows.reset();
    if (fault.signal_s >= 0) sent.push_back(&fault);
  }
  double previous_end_s = 0;
  for (size_t idx = 0; idx < sent.size(); ++idx) {
    FaultRecord& fault = *sent[idx];
    const double recovered_s =
        fault.recovered_s >= 0 ? fault.recovered_s : std::max(run_end_s, fault.signal_s);
    const double next_s =
        idx + 1 < sent.size() ? sent[idx + 1]->signal_s : std::max(run_end_s, recovered_s);
    fault.windows = windows_around(records, previous_end_s, fault.signal_s, recovered_s, next_s);
    previous_end_s = recovered_s;
  }
}

std::string format_faults(const std::vector<FaultRecord>& faults) {
  if (faults.empty()) return "";
  std::string out = "==================== Faults ======================\n";
  for (size_t idx = 0; idx < faults.size(); ++idx) {
    const FaultRecord& fault = faults[idx];
    out += printf_string("Fault %zu at %.2f s:", idx + 1, fault.at_s);
    for (const FaultTarget& target : fault.targets) {
      out += printf_string(" SIG%s rank %d (%s, pid %lld);", signal_name(target.signal),
                           target.rank, target.worker_id.empty() ? "-" : target.worker_id.c_str(),
                           static_cast<long long>(target.pid));
    }
    out += "\n";
    if (fault.signal_s >= 0) {
      out += printf_string(
          "  signalled at %.2f s, recovered at %.2f s (%.2f s; the coordinator: %.3f s), back "
          "to size at %.2f s; generation %lld -> %lld\n",
          fault.signal_s, fault.recovered_s,
          fault.recovered_s >= 0 ? fault.recovered_s - fault.signal_s : -1.0,
          fault.coordinator_recovery_s, fault.back_to_size_s,
          static_cast<long long>(fault.generation_before),
          static_cast<long long>(fault.generation_after));
    }
    if (!fault.error.empty()) out += "  " + fault.error + "\n";
    if (fault.windows) out += format_windows(*fault.windows);
  }
  out += std::string(50, '=') + "\n";
  return out;
}

nlohmann::json to_json(const std::vector<FaultRecord>& faults) {
  nlohmann::json out = nlohmann::json::array();
  for (const FaultRecord& fault : faults) {
    nlohmann::json targets = nlohmann::json::array();
    for (const FaultTarget& target : fault.targets) {
      targets.push_back({{"rank", target.rank},
                         {"signal", signal_name(target.signal)},
                         {"worker_id", target.worker_id},
                         {"pid", target.pid}});
    }
    nlohmann::json entry{{"at_s", fault.at_s},
                         {"targets", std::move(targets)},
                         {"signal_s", fault.signal_s},
                         {"recovered_s", fault.recovered_s},
                         {"back_to_size_s", fault.back_to_size_s},
                         {"coordinator_recovery_s", fault.coordinator_recovery_s},
                         {"generation_before", fault.generation_before},
                         {"generation_after", fault.generation_after},
                         {"error", fault.error}};
    if (fault.windows) entry["windows"] = to_json(*fault.windows);
    out.push_back(std::move(entry));
  }
  return out;
}

}  // namespace eep::bench
