#include <catch2/catch.hpp>

#include <thread>
#include <vector>

#include "eep/coordinator/metrics.h"

using namespace eep::coordinator;
using namespace std::chrono_literals;

TEST_CASE("the registry renders the Prometheus text format", "[metrics]") {
  MetricsRegistry registry;
  Counter& requests = registry.counter("eep_test_requests_total", "Requests.\nSecond line");
  requests.inc();
  requests.inc(2);
  CHECK(&registry.counter("eep_test_requests_total", "ignored") == &requests);
  registry.counter("eep_test_codes_total", "By code.", {{"code", "200"}}).inc(5);
  registry.counter("eep_test_codes_total", "By code.", {{"code", "4\"0\\0"}}).inc();
  registry.gauge("eep_test_ratio", "A ratio.").set(0.25);
  Histogram& latency = registry.histogram("eep_test_latency_seconds", "Latency.", {0.1, 1.0});
  latency.observe(0.05);
  latency.observe(0.1);  // le is inclusive
  latency.observe(0.5);
  latency.observe(7.0);

  const std::string expected =
      "# HELP eep_test_codes_total By code.\n"
      "# TYPE eep_test_codes_total counter\n"
      "eep_test_codes_total{code=\"200\"} 5\n"
      "eep_test_codes_total{code=\"4\\\"0\\\\0\"} 1\n"
      "# HELP eep_test_latency_seconds Latency.\n"
      "# TYPE eep_test_latency_seconds histogram\n"
      "eep_test_latency_seconds_bucket{le=\"0.1\"} 2\n"
      "eep_test_latency_seconds_bucket{le=\"1\"} 3\n"
      "eep_test_latency_seconds_bucket{le=\"+Inf\"} 4\n"
      "eep_test_latency_seconds_sum 7.65\n"
      "eep_test_latency_seconds_count 4\n"
      "# HELP eep_test_ratio A ratio.\n"
      "# TYPE eep_test_ratio gauge\n"
      "eep_test_ratio 0.25\n"
      "# HELP eep_test_requests_total Requests.\\nSecond line\n"
      "# TYPE eep_test_requests_total counter\n"
      "eep_test_requests_total 3\n";
  CHECK(registry.render() == expected);
}

TEST_CASE("metrics are safe from many threads", "[metrics]") {
  MetricsRegistry registry;
  Histogram& histogram = registry.histogram("h", "h", ttft_buckets_seconds());
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        histogram.observe(0.01);
        registry.counter("c_total", "c").inc();
        registry.gauge("g", "g").add(1);
        if (i % 100 == 0) (void)registry.render();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(histogram.snapshot().count == 8000);
  CHECK(registry.counter("c_total", "c").value() == 8000);
  CHECK(registry.gauge("g", "g").value() == 8000);
}

TEST_CASE("serving metrics mirror ServingStats", "[metrics]") {
  MetricsRegistry registry;
  ServingMetrics metrics(registry);
  eep::coordinator::ServingStats stats;
  stats.requests_running = 3;
  stats.requests_waiting = 1;
  stats.requests_finished = 10;
  stats.requests_failed = 2;
  stats.prompt_tokens = 320;
  stats.generation_tokens = 640;
  stats.fleet_size = 4;
  stats.generation = 9;
  metrics.update_from(stats);
  metrics.observe_time_to_first_token(20ms);
  metrics.observe_inter_token_latency(5ms);
  metrics.count_http_response(200);
  metrics.count_http_response(200);
  metrics.count_http_response(413);
  std::string text = registry.render();
  for (const char* line :
       {"eep_requests_running 3\n", "eep_requests_waiting 1\n", "eep_requests_finished_total 10\n",
        "eep_requests_failed_total 2\n", "eep_prompt_tokens_total 320\n",
        "eep_generation_tokens_total 640\n", "eep_fleet_size 4\n", "eep_generation 9\n",
        "eep_time_to_first_token_seconds_bucket{le=\"0.02\"} 1\n",
        "eep_time_to_first_token_seconds_bucket{le=\"0.01\"} 0\n",
        "eep_inter_token_latency_seconds_count 1\n", "eep_http_responses_total{code=\"200\"} 2\n",
        "eep_http_responses_total{code=\"413\"} 1\n"}) {
    CHECK_THAT(text, Catch::Contains(line));
  }
}

TEST_CASE("the throughput log line reports rates between snapshots", "[metrics]") {
  ThroughputLogger logger;
  auto t0 = ThroughputLogger::Clock::time_point{} + 100s;
  eep::coordinator::ServingStats stats;
  CHECK_FALSE(logger.line(stats, t0).has_value());  // the first call only records

  stats.prompt_tokens = 1000;
  stats.generation_tokens = 250;
  stats.requests_running = 7;
  stats.requests_waiting = 2;
  stats.fleet_size = 2;
  auto line = logger.line(stats, t0 + 5s);
  REQUIRE(line.has_value());
  CHECK(*line ==
        "Avg prompt throughput: 200.0 tokens/s, Avg generation throughput: 50.0 tokens/s, "
        "Running: 7 reqs, Waiting: 2 reqs, Ranks: 2");

  stats.generation_tokens = 260;
  stats.requests_running = 0;
  stats.requests_waiting = 0;
  stats.fleet_size = 3;  // after a scale the line goes on with the new size
  line = logger.line(stats, t0 + 10s);
  REQUIRE(line.has_value());
  CHECK(*line ==
        "Avg prompt throughput: 0.0 tokens/s, Avg generation throughput: 2.0 tokens/s, "
        "Running: 0 reqs, Waiting: 0 reqs, Ranks: 3");
  // Idle: one line saying so, then quiet until work comes back.
  line = logger.line(stats, t0 + 15s);
  REQUIRE(line.has_value());
  CHECK_THAT(*line, Catch::Contains("generation throughput: 0.0 tokens/s"));
  CHECK_FALSE(logger.line(stats, t0 + 20s).has_value());
  CHECK_FALSE(logger.line(stats, t0 + 25s).has_value());
  stats.requests_waiting = 1;
  CHECK(logger.line(stats, t0 + 30s).has_value());
}

TEST_CASE("scale metrics: the running stage, stage durations, outcomes counted once", "[metrics]") {
  eep::coordinator::MetricsRegistry registry;
  eep::coordinator::ScaleMetrics metrics(registry);
  eep::protocol::ScaleInfo info;
  info.state = "running";
  info.stage = "WAIT_ACKS";
  info.target_generation = 2;
  info.timeline = {{"WAIT_WORKERS", 0.25}};
  metrics.update_from(info);
  std::string text = registry.render();
  CHECK_THAT(text, Catch::Contains("eep_scale_running 1\n"));
  CHECK_THAT(text, Catch::Contains("eep_scale_stage{stage=\"WAIT_ACKS\"} 1\n"));
  CHECK_THAT(text, Catch::Contains("eep_scale_stage_seconds{stage=\"WAIT_WORKERS\"} 0.25\n"));
  CHECK_THAT(text, !Catch::Contains("eep_scales_total"));

  info.state = "succeeded";
  info.stage = "SUCCEEDED";
  info.elapsed_s = 1.5;
  info.timeline.push_back({"WAIT_ACKS", 1.25});
  metrics.update_from(info);
  metrics.update_from(info);  // the same scale is counted once
  text = registry.render();
  CHECK_THAT(text, Catch::Contains("eep_scale_running 0\n"));
  CHECK_THAT(text, Catch::Contains("eep_scale_stage{stage=\"WAIT_ACKS\"} 0\n"));
  CHECK_THAT(text, Catch::Contains("eep_scale_stage_seconds{stage=\"WAIT_ACKS\"} 1.25\n"));
  CHECK_THAT(text, Catch::Contains("eep_scales_total{outcome=\"succeeded\"} 1\n"));
  CHECK_THAT(text, Catch::Contains("eep_scale_last_seconds 1.5\n"));

  info.state = "failed";
  info.target_generation = 3;
  metrics.update_from(info);
  CHECK_THAT(registry.render(), Catch::Contains("eep_scales_total{outcome=\"failed\"} 1\n"));
}
