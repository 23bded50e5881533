// config/grafana/elastic-ep.json against what the coordinator exports: the real HTTP API on
// loopback with the metric families the coordinator registers in it (scaling, recoveries, EPLB,
// per rank) fed as its event loop feeds them, scraped over GET /metrics; every metric name in
// the dashboard's PromQL must be a series of that scrape. Also config/prometheus.yml's job.
#include <catch2/catch.hpp>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "eep/coordinator/http_api.h"
#include "eep/coordinator/metrics.h"
#include "eep/coordinator/rank_metrics.h"
#include "http_test_support.h"

using namespace eep;
using namespace eep::coordinator;
using namespace eep::coordinator::testing;
using nlohmann::json;

namespace {

std::string config_file(const std::string& name) {
  return std::string(EEP_TEST_DATA_DIR) + "/../../config/" + name;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  INFO(path);
  REQUIRE(in.good());
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The series names of a text exposition (histograms give NAME_bucket, NAME_sum, NAME_count).
std::set<std::string> series_names(const std::string& exposition) {
  std::set<std::string> names;
  std::istringstream lines(exposition);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    names.insert(line.substr(0, line.find_first_of("{ ")));
  }
  return names;
}

// Every PromQL text of the dashboard: panel targets, annotations, template variable queries.
void collect_queries(const json& node, std::vector<std::string>& queries) {
  if (node.is_object()) {
    for (const auto& [key, value] : node.items()) {
      if ((key == "expr" || key == "query" || key == "definition") && value.is_string()) {
        queries.push_back(value.get<std::string>());
      }
      collect_queries(value, queries);
    }
  } else if (node.is_array()) {
    for (const json& item : node) collect_queries(item, queries);
  }
}

// The coordinator's registrations (coordinator.cpp): scale, rank and EPLB families in the HTTP
// API's registry, fed one finished scale, a fleet that lost and recovered a worker, two ranks
// and a measured EPLB window, as the event loop feeds them.
void feed_coordinator_metrics(MetricsRegistry& registry) {
  ScaleMetrics scale(registry);
  protocol::ScaleInfo info;
  info.state = "running";
  info.stage = "WAIT_ACKS";
  info.from_dp = 2;
  info.to_dp = 3;
  info.target_generation = 2;
  info.timeline = {{"WAIT_WORKERS", 0.4}};
  scale.update_from(info);
  info.state = "succeeded";
  info.stage = "SUCCEEDED";
  info.timeline.push_back({"WAIT_ACKS", 1.1});
  info.elapsed_s = 1.5;
  scale.update_from(info);
  protocol::FleetHealth health;
  health.target_dp = 3;
  health.num_failures = 1;
  health.num_recoveries = 1;
  health.last_recovery_s = 0.8;
  scale.update_from(health);

  RankMetrics ranks(registry);
  std::vector<protocol::WorkerInfo> active(2);
  for (int rank = 0; rank < 2; ++rank) {
    active[rank].id = "w" + std::to_string(rank + 1);
    active[rank].state = "ACTIVE";
    active[rank].rank = rank;
    active[rank].load.num_running = 3;
    active[rank].load.num_kv_blocks = 100;
    active[rank].load.num_free_kv_blocks = 40;
    active[rank].load.num_steps = 50;
    active[rank].load.step_wait_s = 0.2;
    active[rank].generated_tokens = 500;
  }
  ranks.update_from(active);

  EplbMetrics eplb(registry);
  eplb.set_balancedness(0.8, {0.7, 0.9});
  eplb.count_rebalance(1 << 20, 12.5);
  eplb.count_failed_rebalance();
}

}  // namespace

TEST_CASE("every metric the Grafana dashboard queries is exported on /metrics", "[grafana]") {
  const json dashboard = json::parse(read_text(config_file("grafana/elastic-ep.json")));
  REQUIRE(dashboard["title"] == "elastic-ep");
  REQUIRE(dashboard["panels"].is_array());

  FakeFrontend frontend;
  HttpApi api("127.0.0.1:0", frontend, {});
  REQUIRE(api.start().is_ok());
  feed_coordinator_metrics(api.metrics());
  HttpClient client(api.port());
  REQUIRE(
      client.post("/v1/completions", R"({"prompt":"hi","max_tokens":3,"stream":true})").status ==
      200);
  const HttpReply scrape = client.get("/metrics");
  REQUIRE(scrape.status == 200);
  const std::set<std::string> exported = series_names(scrape.body);
  INFO(scrape.body);

  std::vector<std::string> queries;
  collect_queries(dashboard, queries);
  const std::regex metric_name("eep_[a-zA-Z0-9_:]*");
  std::set<std::string> queried;
  for (const std::string& query : queries) {
    for (auto it = std::sregex_iterator(query.begin(), query.end(), metric_name);
         it != std::sregex_iterator(); ++it) {
      queried.insert(it->str());
    }
  }
  for (const std::string& name : queried) {
    INFO("the dashboard queries " << name);
    CHECK(exported.count(name) == 1);
  }

  // What the dashboard is for (issue 17): each of these has a panel.
  for (const char* name :
       {"eep_fleet_target_dp", "eep_fleet_size", "eep_generation", "eep_scale_stage",
        "eep_scale_stage_seconds", "eep_recoveries_total", "eep_generation_tokens_total",
        "eep_time_to_first_token_seconds_bucket", "eep_inter_token_latency_seconds_bucket",
        "eep_eplb_layer_balancedness", "eep_rank_kv_cache_usage_ratio"}) {
    INFO(name);
    CHECK(queried.count(name) == 1);
  }

  // Every panel but rows has a title and queries, each target an id and a balanced expression.
  std::set<int> ids;
  for (const json& panel : dashboard["panels"]) {
    INFO(panel.dump());
    CHECK(ids.insert(panel["id"].get<int>()).second);
    CHECK_FALSE(panel["title"].get<std::string>().empty());
    if (panel["type"] == "row") continue;
    REQUIRE_FALSE(panel["targets"].empty());
    for (const json& target : panel["targets"]) {
      const std::string expr = target["expr"];
      CHECK_FALSE(target["refId"].get<std::string>().empty());
      CHECK(std::count(expr.begin(), expr.end(), '(') == std::count(expr.begin(), expr.end(), ')'));
      CHECK(std::count(expr.begin(), expr.end(), '{') == std::count(expr.begin(), expr.end(), '}'));
      CHECK(std::count(expr.begin(), expr.end(), '[') == std::count(expr.begin(), expr.end(), ']'));
    }
  }
}

TEST_CASE("prometheus.yml scrapes the coordinator's /metrics as the dashboard's job", "[grafana]") {
  const std::string config = read_text(config_file("prometheus.yml"));
  const json dashboard = json::parse(read_text(config_file("grafana/elastic-ep.json")));
  std::string job;
  for (const json& variable : dashboard["templating"]["list"]) {
    if (variable["name"] == "job") job = variable["current"]["value"];
  }
  REQUIRE_FALSE(job.empty());
  CHECK_THAT(config, Catch::Contains("job_name: " + job + "\n"));
  CHECK_THAT(config, Catch::Contains("metrics_path: /metrics\n"));
  CHECK_THAT(config, Catch::Contains("targets: [\"127.0.0.1:8000\"]"));  // --http's default
}
