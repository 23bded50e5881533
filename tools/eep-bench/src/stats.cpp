#include "eep/bench/stats.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

namespace eep::bench {

namespace {

// Token arrival times of one request: start + ttft, then each inter-token gap.
template <typename Fn>
void for_each_chunk(const RequestRecord& record, Fn&& fn) {
  if (record.chunk_tokens.empty()) return;
  double time_s = record.start_s + record.ttft_s;
  fn(time_s, record.chunk_tokens[0]);
  for (size_t gap_idx = 0; gap_idx < record.itl_s.size(); ++gap_idx) {
    time_s += record.itl_s[gap_idx];
    const int num_tokens =
        gap_idx + 1 < record.chunk_tokens.size() ? record.chunk_tokens[gap_idx + 1] : 1;
    fn(time_s, num_tokens);
  }
}

int bucket_of(double time_s) {
  return time_s <= 0 ? 0 : static_cast<int>(time_s);
}

// vLLM's per-second buckets over the successful requests (their own time range).
struct Buckets {
  std::vector<double> tokens;
  std::vector<int> running;
};
Buckets success_buckets(const std::vector<RequestRecord>& records) {
  Buckets buckets;
  double min_start_s = INFINITY;
  double max_end_s = -INFINITY;
  for (const RequestRecord& record : records) {
    if (!record.success) continue;
    min_start_s = std::min(min_start_s, record.start_s);
    max_end_s = std::max(max_end_s, record.end_s());
  }
  if (min_start_s == INFINITY) return buckets;
  const size_t num_buckets = static_cast<size_t>(std::ceil(max_end_s - min_start_s)) + 1;
  buckets.tokens.assign(num_buckets, 0);
  buckets.running.assign(num_buckets, 0);
  for (const RequestRecord& record : records) {
    if (!record.success) continue;
    for_each_chunk(record, [&](double time_s, int num_tokens) {
      const size_t idx = bucket_of(time_s - min_start_s);
      if (idx < num_buckets) buckets.tokens[idx] += num_tokens;
    });
    const size_t first = bucket_of(record.start_s - min_start_s);
    const size_t last = std::min<size_t>(bucket_of(record.end_s() - min_start_s), num_buckets - 1);
    for (size_t idx = first; idx <= last; ++idx) ++buckets.running[idx];
  }
  return buckets;
}

}  // namespace

double percentile(std::vector<double> values, double pct) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = pct / 100.0 * static_cast<double>(values.size() - 1);
  const size_t lower = static_cast<size_t>(std::floor(rank));
  const size_t upper = std::min(lower + 1, values.size() - 1);
  const double fraction = rank - static_cast<double>(lower);
  return values[lower] + (values[upper] - values[lower]) * fraction;
}

LatencyStats latency_stats_ms(const std::vector<double>& seconds) {
  LatencyStats stats;
  if (seconds.empty()) return stats;
  stats.mean_ms = std::accumulate(seconds.begin(), seconds.end(), 0.0) /
                  static_cast<double>(seconds.size()) * 1000.0;
  stats.median_ms = percentile(seconds, 50) * 1000.0;
  stats.p99_ms = percentile(seconds, 99) * 1000.0;
  return stats;
}

Summary summarize(const std::vector<RequestRecord>& records, double duration_s) {
  Summary summary;
  summary.duration_s = duration_s;
  std::vector<double> ttfts;
  std::vector<double> tpots;
  std::vector<double> itls;
  std::vector<double> e2els;
  for (const RequestRecord& record : records) {
    if (!record.success) {
      ++summary.num_failed;
      continue;
    }
    ++summary.num_completed;
    summary.total_input_tokens += record.prompt_len;
    summary.total_output_tokens += record.output_len;
    ttfts.push_back(record.ttft_s);
    e2els.push_back(record.latency_s);
    if (record.stream && record.output_len > 1) {
      tpots.push_back((record.latency_s - record.ttft_s) / (record.output_len - 1));
    }
    itls.insert(itls.end(), record.itl_s.begin(), record.itl_s.end());
  }
  if (duration_s > 0) {
    summary.request_throughput = summary.num_completed / duration_s;
    summary.output_throughput = summary.total_output_tokens / duration_s;
    summary.total_token_throughput =
        (summary.total_input_tokens + summary.total_output_tokens) / duration_s;
  }
  const Buckets buckets = success_buckets(records);
  for (double tokens : buckets.tokens) {
    summary.peak_output_throughput = std::max(summary.peak_output_throughput, tokens);
  }
  for (int running : buckets.running) {
    summary.peak_concurrent_requests =
        std::max(summary.peak_concurrent_requests, static_cast<double>(running));
  }
  summary.ttft = latency_stats_ms(ttfts);
  summary.tpot = latency_stats_ms(tpots);
  summary.itl = latency_stats_ms(itls);
  summary.e2el = latency_stats_ms(e2els);
  return summary;
}

std::vector<SecondSample> time_series(const std::vector<RequestRecord>& records,
                                      double duration_s) {
  double end_s = duration_s;
  for (const RequestRecord& record : records) end_s = std::max(end_s, record.end_s());
  const size_t num_seconds = static_cast<size_t>(std::ceil(end_s)) + (end_s == 0 ? 1 : 0);
  std::vector<SecondSample> series(num_seconds);
  for (size_t idx = 0; idx < num_seconds; ++idx) series[idx].second = static_cast<int>(idx);
  auto clamp = [&](double time_s) { return std::min<size_t>(bucket_of(time_s), num_seconds - 1); };
  for (const RequestRecord& record : records) {
    for_each_chunk(record, [&](double time_s, int num_tokens) {
      series[clamp(time_s)].output_tokens += num_tokens;
    });
    SecondSample& end_sample = series[clamp(record.end_s())];
    ++(record.success ? end_sample.completed : end_sample.failed);
    for (size_t idx = clamp(record.start_s); idx <= clamp(record.end_s()); ++idx) {
      ++series[idx].running;
    }
  }
  return series;
}

namespace {

// Python's "{:<40} {:<10}" and "{:<40} {:<10.2f}".
void row(std::string& out, const char* label, const std::string& value) {
  char line[128];
  std::snprintf(line, sizeof(line), "%-40s %-10s\n", label, value.c_str());
  out += line;
}
void row(std::string& out, const char* label, int64_t value) {
  row(out, label, std::to_string(value));
}
void row(std::string& out, const char* label, double value) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.2f", value);
  row(out, label, std::string(text));
}

// Python's "{s:{c}^{n}}": centred, the extra fill character on the right.
void banner(std::string& out, const std::string& title, char fill) {
  constexpr size_t kWidth = 50;
  const size_t pad = title.size() >= kWidth ? 0 : kWidth - title.size();
  out += std::string(pad / 2, fill) + title + std::string(pad - pad / 2, fill) + "\n";
}

void latency_rows(std::string& out, const char* name, const LatencyStats& stats) {
  const std::string mean = std::string("Mean ") + name + " (ms):";
  const std::string median = std::string("Median ") + name + " (ms):";
  const std::string p99 = std::string("P99 ") + name + " (ms):";
  row(out, mean.c_str(), stats.mean_ms);
  row(out, median.c_str(), stats.median_ms);
  row(out, p99.c_str(), stats.p99_ms);
}

}  // namespace

std::string format_table(const Summary& summary, const TableOptions& options) {
  std::string out;
  banner(out, " Serving Benchmark Result ", '=');
  row(out, "Successful requests:", summary.num_completed);
  if (summary.num_failed > 0) row(out, "Failed requests:", summary.num_failed);
  if (options.max_concurrency) {
    row(out, "Maximum request concurrency:", static_cast<int64_t>(*options.max_concurrency));
  }
  if (options.request_rate) row(out, "Request rate configured (RPS):", *options.request_rate);
  row(out, "Benchmark duration (s):", summary.duration_s);
  row(out, "Total input tokens:", summary.total_input_tokens);
  row(out, "Total generated tokens:", summary.total_output_tokens);
  row(out, "Request throughput (req/s):", summary.request_throughput);
  row(out, "Output token throughput (tok/s):", summary.output_throughput);
  row(out, "Peak output token throughput (tok/s):", summary.peak_output_throughput);
  row(out, "Peak concurrent requests:", summary.peak_concurrent_requests);
  row(out, "Total Token throughput (tok/s):", summary.total_token_throughput);
  banner(out, "Time to First Token", '-');
  latency_rows(out, "TTFT", summary.ttft);
  banner(out, "Time per Output Token (excl. 1st token)", '-');
  latency_rows(out, "TPOT", summary.tpot);
  banner(out, "Inter-token Latency", '-');
  latency_rows(out, "ITL", summary.itl);
  out += std::string(50, '=') + "\n";
  return out;
}

std::string format_errors(const std::vector<RequestRecord>& records, int max_errors) {
  std::string out;
  int num_shown = 0;
  for (const RequestRecord& record : records) {
    if (record.success) continue;
    if (num_shown == 0) {
      out += "Failed requests during benchmark run detected (capping to " +
             std::to_string(max_errors) + "):\n";
    }
    if (num_shown == max_errors) break;
    out += "Error " + std::to_string(num_shown) + ": request " +
           std::to_string(record.request_idx) + ": " + record.error + "\n";
    ++num_shown;
  }
  return out;
}

nlohmann::json to_json(const Summary& summary) {
  auto stats = [](const LatencyStats& s) {
    return nlohmann::json{{"mean_ms", s.mean_ms}, {"median_ms", s.median_ms}, {"p99_ms", s.p99_ms}};
  };
  return {{"completed", summary.num_completed},
          {"failed", summary.num_failed},
          {"duration_s", summary.duration_s},
          {"total_input_tokens", summary.total_input_tokens},
          {"total_output_tokens", summary.total_output_tokens},
          {"request_throughput", summary.request_throughput},
          {"output_throughput", summary.output_throughput},
          {"total_token_throughput", summary.total_token_throughput},
          {"peak_output_throughput", summary.peak_output_throughput},
          {"peak_concurrent_requests", summary.peak_concurrent_requests},
          {"ttft", stats(summary.ttft)},
          {"tpot", stats(summary.tpot)},
          {"itl", stats(summary.itl)},
          {"e2el", stats(summary.e2el)}};
}

nlohmann::json to_json(const RequestRecord& record, bool with_tokens) {
  nlohmann::json out{{"id", record.request_idx},        {"prompt_len", record.prompt_len},
                     {"max_tokens", record.max_tokens}, {"output_len", record.output_len},
                     {"stream", record.stream},         {"start_s", record.start_s},
                     {"ttft_s", record.ttft_s},         {"itl_s", record.itl_s},
                     {"latency_s", record.latency_s},   {"success", record.success},
                     {"error", record.error},           {"finish_reason", record.finish_reason}};
  if (with_tokens) {
    out["prompt_ids"] = record.prompt_ids;
    out["output_ids"] = record.output_ids;
    out["output_text"] = record.output_text;
  }
  return out;
}

nlohmann::json to_json(const std::vector<SecondSample>& series) {
  nlohmann::json out = nlohmann::json::array();
  for (const SecondSample& sample : series) {
    out.push_back({{"second", sample.second},
                   {"output_tokens", sample.output_tokens},
                   {"completed", sample.completed},
                   {"failed", sample.failed},
                   {"running", sample.running}});
  }
  return out;
}

}  // namespace eep::bench
