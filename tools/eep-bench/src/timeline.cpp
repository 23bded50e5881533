#include "eep/bench/timeline.h"

#include <signal.h>

#include <algorithm>
#include <cmath>

namespace eep::bench {

namespace {

// Seconds -> bin index, with a bin's begin (idx * bin_s) in that bin whatever the rounding of the
// division, so that the bins agree with window_metrics over [idx * bin_s, (idx + 1) * bin_s).
class BinIndex {
 public:
  BinIndex(double bin_s, size_t num_bins) : bin_s_(bin_s), num_bins_(num_bins) {}

  size_t of(double time_s) const {
    const double guess = std::floor(time_s / bin_s_);
    size_t idx = guess <= 0 ? 0 : std::min(static_cast<size_t>(guess), num_bins_ - 1);
    while (idx + 1 < num_bins_ && time_s >= begin_s(idx + 1)) ++idx;
    while (idx > 0 && time_s < begin_s(idx)) --idx;
    return idx;
  }
  double begin_s(size_t idx) const { return static_cast<double>(idx) * bin_s_; }
  double end_s(size_t idx) const { return static_cast<double>(idx + 1) * bin_s_; }

 private:
  double bin_s_;
  size_t num_bins_;
};

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + "\"";
}

}  // namespace

Result<std::vector<TimelineBin>> timeline_bins(const std::vector<RequestRecord>& records,
                                               double duration_s, double bin_s) {
  if (!(bin_s > 0 && bin_s <= 1)) {
    return error(
        ErrorCode::kInvalidArgument,
        "the timeline's bin must be > 0 and at most 1 second, not " + printf_string("%g", bin_s));
  }
  double end_s = std::max(duration_s, 0.0);
  for (const RequestRecord& record : records) end_s = std::max(end_s, record.end_s());
  // 3.6 / 0.1 is 36.000000000000004: a bin for the rounding error would stay empty.
  const size_t num_bins = std::max<size_t>(1, static_cast<size_t>(std::ceil(end_s / bin_s - 1e-9)));
  const BinIndex bins_of(bin_s, num_bins);
  std::vector<TimelineBin> bins(num_bins);
  std::vector<std::vector<double>> itls_s(num_bins);
  for (size_t idx = 0; idx < num_bins; ++idx) {
    bins[idx].begin_s = bins_of.begin_s(idx);
    bins[idx].end_s = bins_of.end_s(idx);
  }
  for (const RequestRecord& record : records) {
    TimelineBin& end_bin = bins[bins_of.of(record.end_s())];
    ++(record.success ? end_bin.num_completed : end_bin.num_failed);
    for (size_t idx = bins_of.of(record.start_s); idx <= bins_of.of(record.end_s()); ++idx) {
      const double overlap_s =
          std::min(record.end_s(), bins[idx].end_s) - std::max(record.start_s, bins[idx].begin_s);
      if (overlap_s > 0) bins[idx].running_requests += overlap_s / bin_s;
    }
    if (record.chunk_tokens.empty()) continue;
    // Token chunks: start + ttft, then each gap (a non-streamed reply is one chunk at its end).
    double arrived_s = record.start_s + record.ttft_s;
    bins[bins_of.of(arrived_s)].output_tokens += record.chunk_tokens[0];
    for (size_t gap_idx = 0; gap_idx < record.itl_s.size(); ++gap_idx) {
      const double gap_s = record.itl_s[gap_idx];
      const double previous_s = arrived_s;
      arrived_s += gap_s;
      const size_t arrived_idx = bins_of.of(arrived_s);
      bins[arrived_idx].output_tokens +=
          gap_idx + 1 < record.chunk_tokens.size() ? record.chunk_tokens[gap_idx + 1] : 1;
      itls_s[arrived_idx].push_back(gap_s);
      // (previous, arrived] overlaps every bin from the one holding `previous` to the one
      // holding `arrived` (scaling.h's rule for the longest gap of a window).
      for (size_t idx = bins_of.of(previous_s); idx <= arrived_idx; ++idx) {
        bins[idx].longest_gap_ms = std::max(bins[idx].longest_gap_ms, gap_s * 1000.0);
      }
    }
  }
  for (size_t idx = 0; idx < num_bins; ++idx) {
    bins[idx].output_throughput = bins[idx].output_tokens / bin_s;
    const LatencyStats itl = latency_stats_ms(itls_s[idx]);
    bins[idx].itl_mean_ms = itl.mean_ms;
    bins[idx].itl_p99_ms = itl.p99_ms;
  }
  return bins;
}

std::vector<TimelineEvent> timeline_events(const std::vector<ScaleRecord>& scales,
                                           const std::vector<FaultRecord>& faults) {
  std::vector<TimelineEvent> events;
  for (const ScaleRecord& scale : scales) {
    if (scale.command_s < 0) continue;  // never sent
    TimelineEvent event;
    event.kind = TimelineEvent::Kind::kScale;
    event.at_s = scale.command_s;
    event.label = scale.accepted() ? printf_string("scale %d->%d ", scale.from_dp, scale.trigger.dp)
                                   : printf_string("scale to %d ", scale.trigger.dp);
    event.label += to_string(scale.outcome);
    if (scale.outcome_s >= 0 && !scale.timeline.empty()) {
      double begin_s = std::max(scale.command_s, scale.outcome_s - scale.total_s);
      for (const protocol::StageDuration& stage : scale.timeline) {
        event.stages.push_back({stage.stage, begin_s, begin_s + stage.seconds});
        begin_s += stage.seconds;
      }
    }
    events.push_back(std::move(event));
  }
  for (const FaultRecord& fault : faults) {
    if (fault.signal_s < 0) continue;
    TimelineEvent event;
    event.kind = TimelineEvent::Kind::kFault;
    event.at_s = fault.signal_s;
    for (const FaultTarget& target : fault.targets) {
      if (!event.label.empty()) event.label += ", ";
      event.label += printf_string("kill rank %d (%s)", target.rank,
                                   target.signal == SIGSTOP ? "STOP" : "KILL");
    }
    if (event.label.empty()) event.label = "fault";
    if (fault.recovered_s >= 0) {
      event.stages.push_back({"RECOVER", fault.signal_s, fault.recovered_s});
      if (fault.back_to_size_s > fault.recovered_s) {
        event.stages.push_back({"BACK_TO_SIZE", fault.recovered_s, fault.back_to_size_s});
      }
    }
    events.push_back(std::move(event));
  }
  std::stable_sort(events.begin(), events.end(),
                   [](const TimelineEvent& a, const TimelineEvent& b) { return a.at_s < b.at_s; });
  return events;
}

std::string timeline_csv(const std::vector<TimelineBin>& bins,
                         const std::vector<TimelineEvent>& events) {
  std::string out =
      "begin_s,end_s,output_tokens,output_tokens_per_s,running_requests,completed,failed,"
      "itl_mean_ms,itl_p99_ms,longest_gap_ms,stage,events\n";
  for (const TimelineBin& bin : bins) {
    std::string stage;
    std::string markers;
    for (const TimelineEvent& event : events) {
      if (event.at_s >= bin.begin_s && event.at_s < bin.end_s) {
        markers += (markers.empty() ? "" : "; ") + event.label;
      }
      for (const TimelineStage& band : event.stages) {
        if (band.begin_s <= bin.begin_s && bin.begin_s < band.end_s) stage = band.name;
      }
    }
    out += printf_string("%.3f,%.3f,%.0f,%.1f,%.2f,%lld,%lld,%.3f,%.3f,%.3f,", bin.begin_s,
                         bin.end_s, bin.output_tokens, bin.output_throughput, bin.running_requests,
                         static_cast<long long>(bin.num_completed),
                         static_cast<long long>(bin.num_failed), bin.itl_mean_ms, bin.itl_p99_ms,
                         bin.longest_gap_ms);
    out += csv_field(stage) + "," + csv_field(markers) + "\n";
  }
  return out;
}

}  // namespace eep::bench
