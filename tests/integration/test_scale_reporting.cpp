// After a scale everything that reports keeps reporting, with the new size (issue "Elastic
// scaling", items 3 and 4; vLLM's throughput logging stopped after a scale-up): the coordinator's
// throughput line, /metrics (serving and the scale's stages) and `eepctl status`. Real
// processes, CPU workers, a tiny model.
#include <regex>
#include <sstream>

#include "fleet.h"

using namespace eep;
using namespace eep::testing;

namespace {

// One sample of /metrics (curl).
double metric(Fleet& fleet, const std::string& name) {
  CommandResult page = run_command({"curl", "-s", fleet.base_url() + "/metrics"}, 10s);
  REQUIRE(page.exit_code == 0);
  std::istringstream lines(page.output);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  }
  FAIL("no sample " << name << " in /metrics:\n" << page.output);
  return 0;
}

int64_t bench(Fleet& fleet, uint32_t seed) {
  CommandResult run =
      run_command({bin("eep-bench"), "--base-url", fleet.base_url(), "--num-prompts", "48",
                   "--random-input-len", "16", "--random-output-len", "24", "--max-concurrency",
                   "16", "--seed", std::to_string(seed), "--no-progress"},
                  120s);
  INFO(run.output);
  REQUIRE(run.exit_code == 0);
  CHECK_THAT(run.output, Catch::Contains("Successful requests:                     48"));
  return 48 * 24;
}

// The largest "Ranks: N" of a throughput line with generation throughput above 0 in the log
// after `from` (a byte offset).
int busy_ranks_logged_after(const std::string& log, size_t from) {
  const std::regex line(R"(Avg generation throughput: ([0-9.]+) tokens/s, .*Ranks: ([0-9]+))");
  int ranks = 0;
  const std::string tail = log.substr(std::min(from, log.size()));
  for (std::sregex_iterator it(tail.begin(), tail.end(), line), end; it != end; ++it) {
    if (std::stod((*it)[1].str()) > 0) ranks = std::max(ranks, std::stoi((*it)[2].str()));
  }
  return ranks;
}

}  // namespace

TEST_CASE("after a scale the throughput line, /metrics and eepctl status report the new size",
          "[scale_reporting]") {
  TempDir dir;
  const std::string model = make_tiny_model(dir, 4);
  Fleet fleet({"--dp", "2", "--model", model, "--worker-arg=--kv-blocks=128",
               "--stats-log-interval-ms", "200"});
  REQUIRE(eventually([&] { return fleet.has_active(2); }, 30s));
  REQUIRE(eventually([&] { return metric(fleet, "eep_fleet_size") == 2; }, 10s));

  int64_t generated = bench(fleet, 1);
  REQUIRE(eventually([&] { return busy_ranks_logged_after(fleet.coordinator_log(), 0) == 2; }, 5s));

  const std::string succeeded = "eep_scales_total{outcome=\"succeeded\"}";
  double scales = metric(fleet, succeeded);  // the start (0 -> 2) was one
  for (int size : {3, 1}) {
    INFO("scale to " << size);
    const size_t log_before = fleet.coordinator_log().size();
    CommandResult scaled = fleet.eepctl({"scale", "--dp", std::to_string(size)}, 60s);
    INFO(scaled.output);
    REQUIRE(scaled.exit_code == 0);
    generated += bench(fleet, 2 + size);
    INFO(fleet.coordinator_log());
    // The line goes on, busy, with the new size.
    CHECK(eventually(
        [&] { return busy_ranks_logged_after(fleet.coordinator_log(), log_before) == size; }, 5s));
    CHECK(eventually([&] { return metric(fleet, "eep_fleet_size") == size; }, 5s));
    CHECK(metric(fleet, "eep_generation_tokens_total") == generated);
    CHECK(metric(fleet, "eep_requests_failed_total") == 0);
    // The scale's stages and outcome.
    CHECK(eventually([&] { return metric(fleet, succeeded) == scales + 1; }, 5s));
    scales += 1;
    CHECK(metric(fleet, "eep_scale_running") == 0);
    CHECK(metric(fleet, "eep_scale_stage_seconds{stage=\"WAIT_ACKS\"}") > 0);
    CHECK(metric(fleet, "eep_scale_last_seconds") > 0);
    const json status = fleet.status();
    CHECK(status["active_dp"] == size);
    CHECK(fleet.workers_in("ACTIVE").size() == static_cast<size_t>(size));
    CommandResult table = fleet.eepctl({"status"});
    CHECK_THAT(table.output, Catch::Contains("-> " + std::to_string(size) + " succeeded"));
  }
}
