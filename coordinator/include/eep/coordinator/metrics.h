// Prometheus metrics for the coordinator: a registry of counters, gauges and fixed-bucket
// histograms rendered in the text exposition format 0.0.4 (served by GET /metrics), and the
// periodic throughput log line vLLM prints. Every method is thread-safe: the HTTP threads observe
// latencies while the event loop sets gauges and a scrape renders.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "eep/common/protocol.h"

#include "eep/coordinator/serving.h"

namespace eep::coordinator {

// Label pairs of one series, e.g. {{"code", "200"}}. Rendered in the given order.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// Monotonic. set() mirrors a total kept elsewhere (ServingStats); it must not go down.
class Counter {
 public:
  void inc(double amount = 1.0);
  void set(double total);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Gauge {
 public:
  void set(double value) { value_.store(value, std::memory_order_relaxed); }
  void add(double amount);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Buckets fixed at construction (upper bounds, strictly increasing; +Inf is implicit).
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);

  struct Snapshot {
    std::vector<double> upper_bounds;
    std::vector<uint64_t> cumulative_counts;  // one per bound, then one for +Inf
    double sum = 0.0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;

 private:
  const std::vector<double> upper_bounds_;
  mutable std::mutex mutex_;
  std::vector<uint64_t> bucket_counts_;  // not cumulative; last is +Inf
  double sum_ = 0.0;
  uint64_t count_ = 0;
};

// Latency buckets in seconds, from vLLM's TTFT and inter-token latency histograms.
std::vector<double> ttft_buckets_seconds();
std::vector<double> inter_token_latency_buckets_seconds();
std::vector<double> request_latency_buckets_seconds();

// Families are keyed by name; asking twice for the same name and labels returns the same
// object (references stay valid for the registry's lifetime). Asking for an existing name with
// another type, or a histogram with other buckets, is a programming error (EEP_CHECK).
class MetricsRegistry {
 public:
  Counter& counter(const std::string& name, const std::string& help, MetricLabels labels = {});
  Gauge& gauge(const std::string& name, const std::string& help, MetricLabels labels = {});
  Histogram& histogram(const std::string& name, const std::string& help,
                       std::vector<double> upper_bounds, MetricLabels labels = {});

  // Text exposition format 0.0.4 (Content-Type: text/plain; version=0.0.4), families sorted
  // by name.
  std::string render() const;

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Family {
    Type type;
    std::string help;
    std::vector<double> upper_bounds;            // histograms only
    std::map<std::string, MetricLabels> labels;  // by rendered label text
    std::map<std::string, std::unique_ptr<Counter>> counters;
    std::map<std::string, std::unique_ptr<Gauge>> gauges;
    std::map<std::string, std::unique_ptr<Histogram>> histograms;
  };
  Family& family(const std::string& name, Type type, const std::string& help);

  mutable std::mutex mutex_;
  std::map<std::string, Family> families_;
};

// The serving metrics the HTTP API exports. Latencies are observed by the HTTP API per request;
// the request and token totals, fleet size and generation are copied from ServingStats on every
// scrape (update_from()).
class ServingMetrics {
 public:
  explicit ServingMetrics(MetricsRegistry& registry);

  void update_from(const ServingStats& stats);
  void observe_time_to_first_token(std::chrono::duration<double> ttft);
  void observe_inter_token_latency(std::chrono::duration<double> itl);
  void observe_request_latency(std::chrono::duration<double> e2e);
  // Every HTTP response the API sends, by status code (e.g. 200, 400, 413).
  void count_http_response(int status_code);

 private:
  MetricsRegistry& registry_;
  Gauge& running_;
  Gauge& waiting_;
  Counter& finished_;
  Counter& failed_;
  Counter& prompt_tokens_;
  Counter& generation_tokens_;
  Gauge& fleet_size_;
  Gauge& generation_;
  Histogram& ttft_;
  Histogram& itl_;
  Histogram& e2e_;
};

// Expert load balancing (docs/eplb.md): the measured balancedness of the window and what the
// rebalances moved. The coordinator's event loop sets them; a scrape reads them.
class EplbMetrics {
 public:
  explicit EplbMetrics(MetricsRegistry& registry);

  // Mean over max tokens per rank, overall (mean over layers) and one series per layer.
  void set_balancedness(double mean, const std::vector<double>& per_layer);
  // A rebalance that completed: its bytes (summed over ranks) and the longest step gap (ms).
  void count_rebalance(uint64_t bytes_moved, double longest_step_gap_ms);
  void count_failed_rebalance();

 private:
  MetricsRegistry& registry_;
  Gauge& balancedness_;
  Counter& rebalances_;
  Counter& failed_rebalances_;
  Counter& bytes_moved_;
  Gauge& last_longest_step_gap_ms_;
};

// Scaling (docs/scaling.md): whether a scale runs and in which stage, how long each stage of the
// current or last scale took, and how scales ended. The coordinator's event loop feeds it the
// scale state machine's status; a scrape reads it.
class ScaleMetrics {
 public:
  explicit ScaleMetrics(MetricsRegistry& registry);
  void update_from(const protocol::ScaleInfo& info);
  // Losses and recoveries (docs/fault_tolerance.md): eep_worker_failures_total,
  // eep_recoveries_total, eep_fleet_restarts_total, eep_last_recovery_seconds,
  // eep_fleet_target_dp, eep_fleet_gave_up.
  void update_from(const protocol::FleetHealth& health);

 private:
  MetricsRegistry& registry_;
  Gauge& running_;
  Gauge& last_seconds_;
  std::set<std::string> stages_seen_;  // label values set so far (zeroed when left)
  int64_t counted_generation_ = -1;    // the last scale whose outcome was counted
};

// The periodic log line of vLLM:
//   Avg prompt throughput: 120.0 tokens/s, Avg generation throughput: 340.5 tokens/s,
//   Running: 12 reqs, Waiting: 0 reqs
// Rates are over the interval since the previous call. The coordinator's loop calls line()
// every few seconds; only that thread may call it.
class ThroughputLogger {
 public:
  using Clock = std::chrono::steady_clock;

  // The first call only records its snapshot and returns nullopt. Later calls return the line,
  // except while the server stays idle: after one line that reports idleness (no tokens, nothing
  // running or waiting), further idle intervals return nullopt so an idle server is quiet.
  std::optional<std::string> line(const ServingStats& stats, Clock::time_point now);

 private:
  std::optional<ServingStats> previous_;
  Clock::time_point previous_time_;
  bool reported_idle_ = false;
};

}  // namespace eep::coordinator
