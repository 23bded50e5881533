// A fleet across hosts scales under load (issue 16, docs/hosts.md): a coordinator and three
// worker hosts with two CPU workers each, every host a network namespace. The fleet serves at
// 2 ranks (both on the first host), scales to 4 and 6 across the hosts and back to 2 while
// eep-bench sends requests: no request fails, every greedy output equals the one-host run's, the
// ranks of each host are consecutive, and `eepctl status` shows the hosts and their ranks.
#include <thread>

#include "hosts_fleet.h"

using namespace eep;
using namespace eep::testing;

namespace {

constexpr int kNumPrompts = 120;
// The scaled run lasts at least kNumPrompts / kRequestRate = 10 s: longer than the three scales.
constexpr int kRequestRate = 12;

std::vector<std::string> bench_argv(const Fleet& fleet, const std::string& request_rate,
                                    const std::string& results) {
  // clang-format off
  return fleet.here({bin("eep-bench"), "--base-url", fleet.base_url(), "--num-prompts",
                     std::to_string(kNumPrompts), "--random-input-len", "16",
                     "--random-output-len", "24", "--max-concurrency", "16", "--request-rate",
                     request_rate, "--stream", "--seed", "23", "--save-tokens", "--no-progress",
                     "--result-json", results});
  // clang-format on
}

}  // namespace

TEST_CASE("a fleet across three hosts scales 2 to 4 to 6 to 2 under load, outputs unchanged",
          "[hosts]") {
  NetworkHosts hosts({"coord", "h1", "h2", "h3"});
  TempDir dir;
  const std::string model = make_tiny_model(dir, 29);
  const std::string keys = make_host_keys(dir, hosts);
  std::vector<std::string> flags = {"--launcher", "none",    "--dp",
                                    "2",          "--model", model,
                                    "--keys-dir", keys,      "--scale-drain-timeout-ms",
                                    "0"};
  const std::vector<std::string> ranges = host_port_ranges(hosts);
  flags.insert(flags.end(), ranges.begin(), ranges.end());
  Fleet fleet(flags, {}, true, coordinator_place(hosts));
  std::vector<ChildProcess> workers;
  // The first host's workers form the fleet of 2; the others then wait as spares.
  for (int n = 0; n < 2; ++n) {
    workers.push_back(start_host_worker(dir, hosts, 1, n, fleet.control(), keys, model));
  }
  const bool formed = eventually([&] { return fleet.has_active(2); }, 60s);
  INFO(fleet.coordinator_log() << read_file(dir.file("h1-0.log")));
  REQUIRE(formed);
  for (size_t host = 2; host <= 3; ++host) {
    for (int n = 0; n < 2; ++n) {
      workers.push_back(start_host_worker(dir, hosts, host, n, fleet.control(), keys, model));
    }
  }
  REQUIRE(eventually([&] { return fleet.workers_in("SPARE").size() == 4; }, 60s));
  // Every worker advertises its own host's address, found from the route to the coordinator.
  const json spares = fleet.status();  // alive for the loop
  REQUIRE(spares["workers"].size() == 6);
  for (const json& worker : spares["workers"]) {
    const std::string id = worker["id"];
    const size_t host = static_cast<size_t>(id[1] - '0');
    CHECK(worker["host"] == hosts.address(host));
  }

  // The reference: the requests served by the fleet of 2 on one host.
  const std::string reference_results = dir.file("reference.json");
  const std::map<int, json> expected =
      reference_outputs(bench_argv(fleet, "inf", reference_results), reference_results, 120s);
  REQUIRE(expected.size() == static_cast<size_t>(kNumPrompts));

  // The same requests while a thread scales across the hosts and back.
  const std::vector<int> sizes = {4, 6, 2};
  std::vector<CommandResult> scales(sizes.size());
  std::vector<std::vector<std::string>> placed(sizes.size());
  std::string status_at_6;
  std::thread scaler([&] {
    std::this_thread::sleep_for(1s);
    for (size_t idx = 0; idx < sizes.size(); ++idx) {
      scales[idx] =
          fleet.eepctl({"scale", "--dp", std::to_string(sizes[idx]), "--wait-s", "60"}, 70s);
      placed[idx] = hosts_by_rank(fleet.status());
      if (sizes[idx] == 6) status_at_6 = fleet.eepctl({"status"}).output;
      std::this_thread::sleep_for(500ms);
    }
  });
  const std::string results = dir.file("scaled.json");
  const CommandResult bench =
      run_command(bench_argv(fleet, std::to_string(kRequestRate), results), 180s);
  scaler.join();

  INFO(bench.output);
  INFO(fleet.coordinator_log());
  for (size_t idx = 0; idx < sizes.size(); ++idx) {
    std::printf("eepctl scale --dp %d (exit %d):\n%s\n", sizes[idx], scales[idx].exit_code,
                scales[idx].output.c_str());
    INFO("scale to dp " << sizes[idx] << ": " << scales[idx].output);
    CHECK(scales[idx].exit_code == 0);
    CHECK(placed[idx].size() == static_cast<size_t>(sizes[idx]));
    CHECK(hosts_consecutive(placed[idx]));
  }
  // 4 ranks: hosts 1 and 2, 6: every host; back to 2: the first host's.
  CHECK(std::set<std::string>(placed[0].begin(), placed[0].end()).size() == 2);
  CHECK(std::set<std::string>(placed[1].begin(), placed[1].end()).size() == 3);
  CHECK(placed[2] == std::vector<std::string>(2, hosts.address(1)));
  std::printf("eepctl status at 6 ranks:\n%s\n", status_at_6.c_str());
  for (size_t host = 1; host <= 3; ++host) {
    CHECK_THAT(status_at_6, Catch::Contains(hosts.address(host)));
  }
  CHECK_THAT(status_at_6, Catch::Contains("3 hosts"));

  REQUIRE(bench.exit_code == 0);
  check_served_as_expected(json::parse(read_file(results)), expected, kNumPrompts);
}
