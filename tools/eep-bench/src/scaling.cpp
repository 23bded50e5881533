#include "eep/bench/scaling.h"

#include <algorithm>
#include <cstdio>
#include <map>

namespace eep::bench {

namespace {

// When each token chunk of a record arrived: start + ttft, then each inter-token gap. A
// non-streamed reply has one chunk, at its end.
std::vector<double> chunk_arrivals_s(const RequestRecord& record) {
  std::vector<double> arrivals;
  if (record.chunk_tokens.empty()) return arrivals;
  arrivals.reserve(record.itl_s.size() + 1);
  double time_s = record.start_s + record.ttft_s;
  arrivals.push_back(time_s);
  for (double gap_s : record.itl_s) arrivals.push_back(time_s += gap_s);
  return arrivals;
}

bool in_window(double time_s, double begin_s, double end_s) {
  return time_s >= begin_s && time_s < end_s;
}

}  // namespace

Result<std::vector<ScaleTrigger>> make_scale_triggers(const std::string& admin,
                                                      const std::vector<double>& scale_at_s,
                                                      const std::vector<int>& scale_to) {
  if (scale_at_s.size() != scale_to.size()) {
    return error(ErrorCode::kInvalidArgument, "--scale-at and --scale-to pair up in order: got " +
                                                  std::to_string(scale_at_s.size()) +
                                                  " --scale-at and " +
                                                  std::to_string(scale_to.size()) + " --scale-to");
  }
  if (!scale_at_s.empty() && admin.empty()) {
    return error(ErrorCode::kInvalidArgument,
                 "--scale-at needs --admin (the coordinator's admin endpoint, e.g. "
                 "tcp://127.0.0.1:5710)");
  }
  std::vector<ScaleTrigger> triggers;
  for (size_t idx = 0; idx < scale_at_s.size(); ++idx) {
    if (!(scale_at_s[idx] >= 0)) {
      return error(ErrorCode::kInvalidArgument,
                   "--scale-at must be seconds >= 0 after the start, not " +
                       printf_string("%g", scale_at_s[idx]));
    }
    if (scale_to[idx] < 1) {
      return error(ErrorCode::kInvalidArgument,
                   "--scale-to must be a fleet size >= 1, not " + std::to_string(scale_to[idx]));
    }
    triggers.push_back({scale_at_s[idx], scale_to[idx]});
  }
  std::stable_sort(triggers.begin(), triggers.end(),
                   [](const ScaleTrigger& a, const ScaleTrigger& b) { return a.at_s < b.at_s; });
  return triggers;
}

const char* to_string(ScaleOutcome outcome) {
  switch (outcome) {
    case ScaleOutcome::kSucceeded:
      return "succeeded";
    case ScaleOutcome::kFailed:
      return "failed";
    case ScaleOutcome::kRefused:
      return "refused";
    case ScaleOutcome::kUnchanged:
      return "unchanged";
    case ScaleOutcome::kNotSent:
      return "not_sent";
    case ScaleOutcome::kUnknown:
      return "unknown";
  }
  return "unknown";
}

WindowMetrics window_metrics(const std::vector<RequestRecord>& records, double begin_s,
                             double end_s) {
  WindowMetrics window;
  window.begin_s = begin_s;
  window.end_s = end_s;
  std::vector<double> itls_s;
  double longest_gap_s = 0;
  for (const RequestRecord& record : records) {
    if (in_window(record.end_s(), begin_s, end_s)) {
      ++(record.success ? window.num_completed : window.num_failed);
    }
    const std::vector<double> arrivals = chunk_arrivals_s(record);
    for (size_t chunk_idx = 0; chunk_idx < arrivals.size(); ++chunk_idx) {
      const double arrived_s = arrivals[chunk_idx];
      if (in_window(arrived_s, begin_s, end_s))
        window.output_tokens += record.chunk_tokens[chunk_idx];
      if (chunk_idx == 0) continue;
      const double gap_s = arrived_s - arrivals[chunk_idx - 1];
      if (in_window(arrived_s, begin_s, end_s)) itls_s.push_back(gap_s);
      // (previous, arrived] overlaps [begin, end): half-open like the windows, so a gap whose
      // second token arrived at `begin` is this window's, as its ITL is.
      const bool overlaps = arrivals[chunk_idx - 1] < end_s && arrived_s >= begin_s;
      if (overlaps && gap_s > longest_gap_s) {
        longest_gap_s = gap_s;
        window.longest_gap_request_idx = record.request_idx;
        window.longest_gap_start_s = arrivals[chunk_idx - 1];
      }
    }
  }
  if (end_s > begin_s) window.output_throughput = window.output_tokens / (end_s - begin_s);
  window.itl = latency_stats_ms(itls_s);
  window.longest_gap_ms = longest_gap_s * 1000.0;
  return window;
}

ScaleWindows windows_around(const std::vector<RequestRecord>& records, double previous_end_s,
                            double begin_s, double end_s, double next_begin_s) {
  ScaleWindows windows;
  windows.before = window_metrics(records, previous_end_s, begin_s);
  windows.during = window_metrics(records, begin_s, end_s);
  windows.after = window_metrics(records, end_s, std::max(end_s, next_begin_s));
  return windows;
}

void attach_windows(std::vector<ScaleRecord>& scales, const std::vector<RequestRecord>& records,
                    double run_end_s) {
  std::vector<ScaleRecord*> accepted;
  for (ScaleRecord& scale : scales) {
    scale.windows.reset();
    if (scale.accepted()) accepted.push_back(&scale);
  }
  double previous_outcome_s = 0;
  for (size_t idx = 0; idx < accepted.size(); ++idx) {
    ScaleRecord& scale = *accepted[idx];
    // No outcome seen (unknown): "during" runs to the end of the run, "after" is empty.
    const double outcome_s =
        scale.outcome_s >= 0 ? scale.outcome_s : std::max(run_end_s, scale.command_s);
    const double next_command_s =
        idx + 1 < accepted.size() ? accepted[idx + 1]->command_s : std::max(run_end_s, outcome_s);
    scale.windows =
        windows_around(records, previous_outcome_s, scale.command_s, outcome_s, next_command_s);
    previous_outcome_s = outcome_s;
  }
}

namespace {

std::string format_window_row(const char* name, const WindowMetrics& window) {
  return printf_string("  %-7s %8.2f %8.2f %9lld %7lld %10.1f %9.2f %9.2f %11.1f\n", name,
                       window.begin_s, window.end_s, static_cast<long long>(window.num_completed),
                       static_cast<long long>(window.num_failed), window.output_throughput,
                       window.itl.mean_ms, window.itl.p99_ms, window.longest_gap_ms);
}

}  // namespace

std::string format_windows(const ScaleWindows& windows) {
  return "  window   from(s)    to(s) completed  failed  out tok/s  mITL(ms) p99ITL(ms) "
         "maxgap(ms)\n" +
         format_window_row("before", windows.before) + format_window_row("during", windows.during) +
         format_window_row("after", windows.after);
}

std::vector<RankShare> rank_shares(const nlohmann::json& begin, const nlohmann::json& end) {
  std::map<std::string, int64_t> tokens_at_begin;
  for (const nlohmann::json& worker : begin) {
    if (worker.value("state", std::string()) != "ACTIVE") continue;
    tokens_at_begin[worker.value("id", std::string())] = worker.value("generated_tokens", 0LL);
  }
  std::vector<RankShare> shares;
  int64_t total = 0;
  for (const nlohmann::json& worker : end) {
    if (worker.value("state", std::string()) != "ACTIVE") continue;
    auto at_begin = tokens_at_begin.find(worker.value("id", std::string()));
    if (at_begin == tokens_at_begin.end()) continue;
    RankShare share;
    share.rank = worker.value("rank", -1);
    share.worker_id = at_begin->first;
    share.generated_tokens = worker.value("generated_tokens", 0LL) - at_begin->second;
    total += share.generated_tokens;
    shares.push_back(std::move(share));
  }
  if (total <= 0) return {};
  for (RankShare& share : shares) share.share = double(share.generated_tokens) / double(total);
  std::sort(shares.begin(), shares.end(),
            [](const RankShare& a, const RankShare& b) { return a.rank < b.rank; });
  return shares;
}

std::string format_scales(const std::vector<ScaleRecord>& scales) {
  if (scales.empty()) return "";
  std::string out = "==================== Scales ======================\n";
  for (size_t idx = 0; idx < scales.size(); ++idx) {
    const ScaleRecord& scale = scales[idx];
    out += printf_string("Scale %zu: ", idx + 1);
    if (scale.accepted()) {
      out += printf_string("%d -> %d, sent at %.2f s, accepted at %.2f s: ", scale.from_dp,
                           scale.trigger.dp, scale.command_s, scale.accepted_s);
    } else {
      out += printf_string("to %d at %.2f s: ", scale.trigger.dp, scale.trigger.at_s);
    }
    out += to_string(scale.outcome);
    if (scale.outcome == ScaleOutcome::kSucceeded || scale.outcome == ScaleOutcome::kFailed) {
      out += printf_string(" in %.2f s (generation %lld)", scale.total_s,
                           static_cast<long long>(scale.target_generation));
    }
    if (!scale.reason.empty()) out += ": " + scale.reason;
    out += "\n";
    for (const protocol::StageDuration& stage : scale.timeline) {
      out += printf_string("  %-18s %8.3f s\n", stage.stage.c_str(), stage.seconds);
      if (stage.stage != "WAIT_ACKS") continue;
      for (const protocol::StageDuration& step : scale.build_stages) {
        out +=
            printf_string("    %-16s %8.3f s (slowest rank)\n", step.stage.c_str(), step.seconds);
      }
    }
    if (scale.weight_bytes_from_peers > 0 || scale.weight_bytes_from_checkpoint > 0) {
      out += printf_string("  weights: %.1f MB from peers in %.3f s, %.1f MB from the checkpoint\n",
                           scale.weight_bytes_from_peers / 1e6, scale.weight_transfer_s,
                           scale.weight_bytes_from_checkpoint / 1e6);
    }
    if (scale.windows) out += format_windows(*scale.windows);
    if (!scale.rank_shares.empty()) {
      out += "  generated after, per rank:";
      for (const RankShare& share : scale.rank_shares) {
        out += printf_string(" %d: %.1f%%", share.rank, 100.0 * share.share);
      }
      out += "\n";
    }
  }
  out += std::string(50, '=') + "\n";
  return out;
}

nlohmann::json to_json(const WindowMetrics& window) {
  return {{"begin_s", window.begin_s},
          {"end_s", window.end_s},
          {"completed", window.num_completed},
          {"failed", window.num_failed},
          {"output_tokens", window.output_tokens},
          {"output_throughput", window.output_throughput},
          {"itl_mean_ms", window.itl.mean_ms},
          {"itl_p99_ms", window.itl.p99_ms},
          {"longest_gap_ms", window.longest_gap_ms},
          {"longest_gap_request", window.longest_gap_request_idx},
          {"longest_gap_start_s", window.longest_gap_start_s}};
}

nlohmann::json to_json(const ScaleWindows& windows) {
  return {{"before", to_json(windows.before)},
          {"during", to_json(windows.during)},
          {"after", to_json(windows.after)}};
}

nlohmann::json to_json(const std::vector<ScaleRecord>& scales) {
  nlohmann::json out = nlohmann::json::array();
  for (const ScaleRecord& scale : scales) {
    nlohmann::json entry{{"at_s", scale.trigger.at_s},
                         {"to_dp", scale.trigger.dp},
                         {"from_dp", scale.from_dp},
                         {"command_s", scale.command_s},
                         {"accepted_s", scale.accepted_s},
                         {"outcome_s", scale.outcome_s},
                         {"outcome", to_string(scale.outcome)},
                         {"reason", scale.reason},
                         {"target_generation", scale.target_generation},
                         {"total_s", scale.total_s},
                         {"timeline", scale.timeline},
                         {"weight_bytes_from_peers", scale.weight_bytes_from_peers},
                         {"weight_bytes_from_checkpoint", scale.weight_bytes_from_checkpoint},
                         {"weight_transfer_s", scale.weight_transfer_s},
                         {"build_stages", scale.build_stages}};
    if (scale.windows) entry["windows"] = to_json(*scale.windows);
    nlohmann::json shares = nlohmann::json::array();
    for (const RankShare& share : scale.rank_shares) {
      shares.push_back({{"rank", share.rank},
                        {"worker", share.worker_id},
                        {"generated_tokens", share.generated_tokens},
                        {"share", share.share}});
    }
    entry["rank_shares_after"] = std::move(shares);
    out.push_back(std::move(entry));
  }
  return out;
}

}  // namespace eep::bench
