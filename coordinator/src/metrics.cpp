#include "eep/coordinator/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "eep/common/check.h"

namespace eep::coordinator {
namespace {

// Shortest text that reads back as the same double; Prometheus spells infinities "+Inf"/"-Inf".
std::string format_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  EEP_CHECK(ec == std::errc());
  return std::string(buffer, end);
}

std::string escape(const std::string& text, bool quotes) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quotes) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

// {a="1",b="2"} with `extra` (a histogram's le) appended; "" when there are no labels.
std::string label_text(const MetricLabels& labels,
                       const std::pair<std::string, std::string>* extra = nullptr) {
  if (labels.empty() && extra == nullptr) return "";
  std::string out = "{";
  bool first = true;
  auto append = [&](const std::pair<std::string, std::string>& label) {
    if (!first) out += ",";
    first = false;
    out += label.first + "=\"" + escape(label.second, true) + "\"";
  };
  for (const auto& label : labels) append(label);
  if (extra != nullptr) append(*extra);
  return out + "}";
}

const char* type_name(int type) {
  switch (type) {
    case 0:
      return "counter";
    case 1:
      return "gauge";
    default:
      return "histogram";
  }
}

void atomic_add(std::atomic<double>& value, double amount) {
  double current = value.load(std::memory_order_relaxed);
  while (!value.compare_exchange_weak(current, current + amount, std::memory_order_relaxed)) {
  }
}

}  // namespace

void Counter::inc(double amount) {
  EEP_CHECK(amount >= 0.0);
  atomic_add(value_, amount);
}

void Counter::set(double total) {
  value_.store(total, std::memory_order_relaxed);
}

void Gauge::add(double amount) {
  atomic_add(value_, amount);
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)), bucket_counts_(upper_bounds_.size() + 1, 0) {
  for (size_t i = 1; i < upper_bounds_.size(); ++i) {
    EEP_CHECK(upper_bounds_[i - 1] < upper_bounds_[i]);
  }
}

void Histogram::observe(double value) {
  // Buckets are "less or equal": the first bound >= value.
  size_t bucket_idx =
      std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value) - upper_bounds_.begin();
  std::lock_guard lock(mutex_);
  ++bucket_counts_[bucket_idx];
  sum_ += value;
  ++count_;
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot snapshot;
  snapshot.upper_bounds = upper_bounds_;
  std::lock_guard lock(mutex_);
  uint64_t cumulative = 0;
  for (uint64_t count : bucket_counts_) {
    cumulative += count;
    snapshot.cumulative_counts.push_back(cumulative);
  }
  snapshot.sum = sum_;
  snapshot.count = count_;
  return snapshot;
}

std::vector<double> ttft_buckets_seconds() {
  return {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
          1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
}

std::vector<double> inter_token_latency_buckets_seconds() {
  return {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
          0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
}

std::vector<double> request_latency_buckets_seconds() {
  return {0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
          30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
}

MetricsRegistry::Family& MetricsRegistry::family(const std::string& name, Type type,
                                                 const std::string& help) {
  auto [it, inserted] = families_.try_emplace(name);
  if (inserted) {
    it->second.type = type;
    it->second.help = help;
  }
  EEP_CHECK(it->second.type == type);  // one name, one type
  return it->second;
}

Counter& MetricsRegistry::counter(const std::string& name, const std::string& help,
                                  MetricLabels labels) {
  std::lock_guard lock(mutex_);
  Family& f = family(name, Type::kCounter, help);
  std::string key = label_text(labels);
  f.labels.emplace(key, std::move(labels));
  auto& slot = f.counters[key];
  if (!slot) slot = std::make_unique<Counter>();
  return *slot;
}

Gauge& MetricsRegistry::gauge(const std::string& name, const std::string& help,
                              MetricLabels labels) {
  std::lock_guard lock(mutex_);
  Family& f = family(name, Type::kGauge, help);
  std::string key = label_text(labels);
  f.labels.emplace(key, std::move(labels));
  auto& slot = f.gauges[key];
  if (!slot) slot = std::make_unique<Gauge>();
  return *slot;
}

Histogram& MetricsRegistry::histogram(const std::string& name, const std::string& help,
                                      std::vector<double> upper_bounds, MetricLabels labels) {
  std::lock_guard lock(mutex_);
  Family& f = family(name, Type::kHistogram, help);
  if (f.histograms.empty()) f.upper_bounds = upper_bounds;
  EEP_CHECK(f.upper_bounds == upper_bounds);  // one family, one set of buckets
  std::string key = label_text(labels);
  f.labels.emplace(key, std::move(labels));
  auto& slot = f.histograms[key];
  if (!slot) slot = std::make_unique<Histogram>(std::move(upper_bounds));
  return *slot;
}

std::string MetricsRegistry::render() const {
  std::lock_guard lock(mutex_);
  std::ostringstream out;
  for (const auto& [name, f] : families_) {
    out << "# HELP " << name << " " << escape(f.help, false) << "\n";
    out << "# TYPE " << name << " " << type_name(static_cast<int>(f.type)) << "\n";
    for (const auto& [key, counter] : f.counters) {
      out << name << key << " " << format_value(counter->value()) << "\n";
    }
    for (const auto& [key, gauge] : f.gauges) {
      out << name << key << " " << format_value(gauge->value()) << "\n";
    }
    for (const auto& [key, histogram] : f.histograms) {
      const MetricLabels& labels = f.labels.at(key);
      Histogram::Snapshot snapshot = histogram->snapshot();
      for (size_t i = 0; i <= snapshot.upper_bounds.size(); ++i) {
        double bound = i < snapshot.upper_bounds.size() ? snapshot.upper_bounds[i] : INFINITY;
        std::pair<std::string, std::string> le{"le", format_value(bound)};
        out << name << "_bucket" << label_text(labels, &le) << " " << snapshot.cumulative_counts[i]
            << "\n";
      }
      out << name << "_sum" << key << " " << format_value(snapshot.sum) << "\n";
      out << name << "_count" << key << " " << snapshot.count << "\n";
    }
  }
  return out.str();
}

ServingMetrics::ServingMetrics(MetricsRegistry& registry)
    : registry_(registry),
      running_(registry.gauge("eep_requests_running", "Requests generating on the workers.")),
      waiting_(registry.gauge("eep_requests_waiting", "Requests queued, not yet scheduled.")),
      finished_(registry.counter("eep_requests_finished_total",
                                 "Requests that finished (stop, length or cancelled).")),
      failed_(registry.counter("eep_requests_failed_total", "Requests that ended in an error.")),
      prompt_tokens_(registry.counter("eep_prompt_tokens_total", "Prompt tokens processed.")),
      generation_tokens_(registry.counter("eep_generation_tokens_total", "Tokens generated.")),
      fleet_size_(registry.gauge("eep_fleet_size", "ACTIVE workers.")),
      generation_(registry.gauge("eep_generation", "The fleet's membership generation.")),
      ttft_(registry.histogram("eep_time_to_first_token_seconds",
                               "From request received to its first token sent, in seconds.",
                               ttft_buckets_seconds())),
      itl_(registry.histogram("eep_inter_token_latency_seconds",
                              "Between successive tokens of one request, in seconds.",
                              inter_token_latency_buckets_seconds())),
      e2e_(registry.histogram("eep_e2e_request_latency_seconds",
                              "From request received to its last token, in seconds.",
                              request_latency_buckets_seconds())) {}

void ServingMetrics::update_from(const ServingStats& stats) {
  running_.set(static_cast<double>(stats.requests_running));
  waiting_.set(static_cast<double>(stats.requests_waiting));
  finished_.set(static_cast<double>(stats.requests_finished));
  failed_.set(static_cast<double>(stats.requests_failed));
  prompt_tokens_.set(static_cast<double>(stats.prompt_tokens));
  generation_tokens_.set(static_cast<double>(stats.generation_tokens));
  fleet_size_.set(stats.fleet_size);
  generation_.set(static_cast<double>(stats.generation));
}

void ServingMetrics::observe_time_to_first_token(std::chrono::duration<double> ttft) {
  ttft_.observe(ttft.count());
}

void ServingMetrics::observe_inter_token_latency(std::chrono::duration<double> itl) {
  itl_.observe(itl.count());
}

void ServingMetrics::observe_request_latency(std::chrono::duration<double> e2e) {
  e2e_.observe(e2e.count());
}

void ServingMetrics::count_http_response(int status_code) {
  registry_
      .counter("eep_http_responses_total", "HTTP responses sent, by status code.",
               {{"code", std::to_string(status_code)}})
      .inc();
}

EplbMetrics::EplbMetrics(MetricsRegistry& registry)
    : registry_(registry),
      balancedness_(registry.gauge(
          "eep_eplb_balancedness",
          "Expert load balance of the EPLB window: mean over max tokens per rank, averaged over "
          "layers (1 = perfect).")),
      rebalances_(registry.counter("eep_eplb_rebalances_total",
                                   "Expert rebalances completed on every rank.")),
      failed_rebalances_(registry.counter("eep_eplb_rebalances_failed_total",
                                          "Expert rebalances that failed or timed out (the old "
                                          "placement stayed).")),
      bytes_moved_(registry.counter("eep_eplb_bytes_moved_total",
                                    "Expert weight bytes moved by rebalances, over all ranks.")),
      last_longest_step_gap_ms_(registry.gauge(
          "eep_eplb_last_longest_step_gap_ms",
          "Longest gap between two steps on any rank during the last completed rebalance, in "
          "milliseconds.")) {}

void EplbMetrics::set_balancedness(double mean, const std::vector<double>& per_layer) {
  balancedness_.set(mean);
  for (size_t layer = 0; layer < per_layer.size(); ++layer) {
    registry_
        .gauge("eep_eplb_layer_balancedness",
               "Expert load balance of one layer over the EPLB window (mean over max tokens per "
               "rank).",
               {{"layer", std::to_string(layer)}})
        .set(per_layer[layer]);
  }
}

void EplbMetrics::count_rebalance(uint64_t bytes_moved, double longest_step_gap_ms) {
  rebalances_.inc();
  bytes_moved_.inc(static_cast<double>(bytes_moved));
  last_longest_step_gap_ms_.set(longest_step_gap_ms);
}

void EplbMetrics::count_failed_rebalance() {
  failed_rebalances_.inc();
}

ScaleMetrics::ScaleMetrics(MetricsRegistry& registry)
    : registry_(registry),
      running_(registry.gauge("eep_scale_running", "1 while a scale runs, else 0.")),
      last_seconds_(registry.gauge(
          "eep_scale_last_seconds",
          "Seconds from command to outcome of the last finished scale (succeeded or failed).")) {}

void ScaleMetrics::update_from(const protocol::ScaleInfo& info) {
  const bool running = info.state == "running";
  running_.set(running ? 1 : 0);
  // The stage: one series per stage name, 1 for the current one while a scale runs.
  stages_seen_.insert(info.stage);
  for (const std::string& stage : stages_seen_) {
    registry_
        .gauge("eep_scale_stage", "1 for the stage the running scale is in, else 0.",
               {{"stage", stage}})
        .set(running && stage == info.stage ? 1 : 0);
  }
  for (const protocol::StageDuration& timing : info.timeline) {
    registry_
        .gauge("eep_scale_stage_seconds",
               "Seconds each stage of the current or last scale took (stages it has left).",
               {{"stage", timing.stage}})
        .set(timing.seconds);
  }
  if (!running && info.state != "idle" && info.target_generation != counted_generation_) {
    counted_generation_ = info.target_generation;
    registry_
        .counter("eep_scales_total", "Scales by outcome (succeeded or failed).",
                 {{"outcome", info.state}})
        .inc();
    last_seconds_.set(info.elapsed_s);
  }
}

void ScaleMetrics::update_from(const protocol::FleetHealth& health) {
  registry_.counter("eep_worker_failures_total", "Members of a live generation lost (died, hung).")
      .set(static_cast<double>(health.num_failures));
  registry_.counter("eep_recoveries_total", "Broken generations rebuilt of their survivors.")
      .set(static_cast<double>(health.num_recoveries));
  registry_
      .counter("eep_fleet_restarts_total",
               "Scales the coordinator started to return the fleet to its target size.")
      .set(static_cast<double>(health.num_restarts));
  registry_
      .gauge("eep_last_recovery_seconds",
             "Seconds from the last loss of a member to the recovered generation serving.")
      .set(health.last_recovery_s);
  registry_.gauge("eep_fleet_target_dp", "The size the coordinator keeps the fleet at.")
      .set(health.target_dp);
  registry_
      .gauge("eep_fleet_gave_up",
             "1 when returning to the target size failed too often (--max-restarts), else 0.")
      .set(health.gave_up.empty() ? 0 : 1);
}

std::optional<std::string> ThroughputLogger::line(const ServingStats& stats,
                                                  Clock::time_point now) {
  if (!previous_) {
    previous_ = stats;
    previous_time_ = now;
    return std::nullopt;
  }
  double seconds = std::chrono::duration<double>(now - previous_time_).count();
  int64_t prompt_tokens = stats.prompt_tokens - previous_->prompt_tokens;
  int64_t generation_tokens = stats.generation_tokens - previous_->generation_tokens;
  previous_ = stats;
  previous_time_ = now;

  bool idle = prompt_tokens == 0 && generation_tokens == 0 && stats.requests_running == 0 &&
              stats.requests_waiting == 0;
  if (idle && reported_idle_) return std::nullopt;
  reported_idle_ = idle;

  auto rate = [seconds](int64_t tokens) { return seconds > 0 ? tokens / seconds : 0.0; };
  char text[256];
  std::snprintf(text, sizeof(text),
                "Avg prompt throughput: %.1f tokens/s, Avg generation throughput: %.1f tokens/s, "
                "Running: %lld reqs, Waiting: %lld reqs, Ranks: %d",
                rate(prompt_tokens), rate(generation_tokens),
                static_cast<long long>(stats.requests_running),
                static_cast<long long>(stats.requests_waiting), stats.fleet_size);
  return std::string(text);
}

}  // namespace eep::coordinator
