// Requests follow capacity (docs/serving.md, "Dispatch on capacity"): a CPU fleet of 2 ranks
// with --max-num-seqs 8 gets a backlog of requests all at once and scales to 4 while it drains.
// The requests wait in the coordinator, not in the old ranks' queues, so both new ranks run 8
// requests within a second of the switch, the tokens generated after it are spread evenly over
// the 4 ranks, nothing fails, and every greedy output equals that of an unscaled run.
#include <algorithm>
#include <atomic>
#include <map>
#include <thread>

#include "eep/common/admin_client.h"
#include "fleet.h"

using namespace eep;
using namespace eep::testing;

namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr int kMaxNumSeqs = 8;
constexpr int kNumPrompts = 240;

std::vector<std::string> bench_argv(const Fleet& fleet, const std::string& results,
                                    std::vector<std::string> extra = {}) {
  // clang-format off
  std::vector<std::string> argv = {
      bin("eep-bench"), "--base-url", fleet.base_url(), "--num-prompts",
      std::to_string(kNumPrompts), "--random-input-len", "32", "--random-output-len", "64",
      "--stream", "--seed", "23", "--save-tokens", "--no-progress", "--result-json", results};
  // clang-format on
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

// One look at the ACTIVE ranks: (rank, running) at a time since the run started.
struct Sample {
  double at_s = 0;
  std::map<int, int> running_by_rank;
};

}  // namespace

TEST_CASE("a scale-up under a backlog: new ranks take work at the switch, tokens spread evenly",
          "[follow_capacity]") {
  TempDir dir;
  const std::string model = make_tiny_model(dir, 29);
  Fleet fleet({"--dp", "2", "--model", model, "--worker-arg=--kv-blocks=512",
               "--worker-arg=--max-num-seqs=" + std::to_string(kMaxNumSeqs), "--max-workers", "4"});
  REQUIRE(eventually([&] { return fleet.has_active(2); }, 30s));

  const std::string reference_results = dir.file("reference.json");
  const std::map<int, json> expected =
      reference_outputs(bench_argv(fleet, reference_results), reference_results, 180s);

  // The scaled run, with a thread that looks at every ACTIVE rank's load every 50 ms.
  AdminClient admin(admin_connection(fleet.admin()));
  std::vector<Sample> samples;
  std::atomic<bool> done{false};
  const SteadyClock::time_point started = SteadyClock::now();
  std::thread watcher([&] {
    while (!done) {
      protocol::AdminRequest request;
      request.cmd = protocol::AdminCommand::kStatus;
      auto reply = admin.call(request, 2s);
      if (reply.is_ok()) {
        Sample sample;
        sample.at_s = std::chrono::duration<double>(SteadyClock::now() - started).count();
        for (const json& worker : reply->at("workers")) {
          if (worker["state"] != "ACTIVE") continue;
          sample.running_by_rank[worker["rank"].get<int>()] =
              worker["load"]["num_running"].get<int>();
        }
        samples.push_back(std::move(sample));
      }
      std::this_thread::sleep_for(50ms);
    }
  });
  const std::string results = dir.file("scaled.json");
  CommandResult bench = run_command(
      bench_argv(fleet, results, {"--admin", fleet.admin(), "--scale-at", "1", "--scale-to", "4"}),
      180s);
  done = true;
  watcher.join();
  INFO(bench.output);
  INFO(fleet.coordinator_log());
  REQUIRE(bench.exit_code == 0);
  const json report = json::parse(read_file(results));
  CHECK(report["summary"]["failed"] == 0);
  CHECK(report["summary"]["completed"] == kNumPrompts);
  REQUIRE(report["scales"].size() == 1);
  const json& scale = report["scales"][0];
  REQUIRE(scale["outcome"] == "succeeded");

  // Greedy outputs: the same as without the scale.
  CHECK(count_different_outputs(report, expected) == 0);

  // The switch: the first look with 4 ACTIVE ranks. Within a second of it, both new ranks run
  // max-num-seqs requests.
  auto switched = std::find_if(samples.begin(), samples.end(),
                               [](const Sample& s) { return s.running_by_rank.size() == 4; });
  REQUIRE(switched != samples.end());
  bool new_ranks_full = false;
  std::string seen;
  for (auto it = switched; it != samples.end() && it->at_s <= switched->at_s + 1.0; ++it) {
    seen += std::to_string(it->at_s) + ":";
    for (const auto& [rank, running] : it->running_by_rank) {
      seen += " " + std::to_string(rank) + "=" + std::to_string(running);
    }
    seen += "\n";
    if (it->running_by_rank.size() == 4 && it->running_by_rank.at(2) == kMaxNumSeqs &&
        it->running_by_rank.at(3) == kMaxNumSeqs) {
      new_ranks_full = true;
    }
  }
  INFO("running per rank in the second after the switch:\n" << seen);
  CHECK(new_ranks_full);

  // The tokens generated after the scale: every rank within 20% of the mean.
  const json& shares = scale["rank_shares_after"];
  INFO("shares: " << shares.dump());
  REQUIRE(shares.size() == 4);
  for (const json& share : shares) {
    CHECK(share["share"].get<double>() > 0.25 * 0.8);
    CHECK(share["share"].get<double>() < 0.25 * 1.2);
  }
  CHECK_THAT(bench.output, Catch::Contains("generated after, per rank:"));
}
