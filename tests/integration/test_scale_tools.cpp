// The tools that drive scales (issue "Elastic scaling", item 3): eep-bench --scale-at/--scale-to
// under streaming load, and scripts/eep-scale.py over the admin socket without eepctl. Real
// processes: a coordinator, CPU workers on the tiny model, eep-bench, python3 with pyzmq.
#include <sstream>

#include "eep/common/subprocess.h"
#include "fleet.h"

using namespace eep;
using namespace eep::testing;

namespace {

// The first python3 on PATH that has pyzmq (a pyenv or venv python3 ahead of Debian's may lack
// it). Fails the test, not skips it, when there is none: scripts/install-deps.sh installs it.
std::string python_with_zmq() {
  std::istringstream dirs(std::getenv("PATH") != nullptr ? std::getenv("PATH") : "");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::string python = (dir.empty() ? "." : dir) + "/python3";
    if (::access(python.c_str(), X_OK) != 0) continue;
    if (run_command({python, "-c", "import zmq"}, 20s).exit_code == 0) return python;
  }
  FAIL("no python3 on PATH can import zmq; install python3-zmq (scripts/install-deps.sh)");
  return "";
}

std::string eep_scale_script() {
  return std::string(EEP_SOURCE_DIR) + "/scripts/eep-scale.py";
}

}  // namespace

TEST_CASE("eep-bench --scale-at scales a streaming fleet 2 -> 3 -> 2, eep-scale.py to 1 and back",
          "[scale_tools]") {
  TempDir dir;
  const std::string model = make_tiny_model(dir, 5);
  // At most 3 workers: a scale to 4 is refused (eep-scale.py's exit 2, below).
  Fleet fleet(
      {"--dp", "2", "--model", model, "--worker-arg=--kv-blocks=256", "--max-workers", "3"});
  REQUIRE(eventually([&] { return fleet.has_active(2); }, 30s));

  // At most 60 requests per second, so the load lasts at least 8 s on any machine (7-9 s of
  // streaming at concurrency 32 on two CPU workers here): the scales at 1 s and 4 s both happen
  // under load, however fast the machine.
  const std::string results = dir.file("bench.json");
  // clang-format off
  CommandResult bench = run_command(
      {bin("eep-bench"), "--base-url", fleet.base_url(), "--admin", fleet.admin(),
       "--num-prompts", "480", "--random-input-len", "16", "--random-output-len", "64",
       "--max-concurrency", "32", "--request-rate", "60", "--stream", "--seed", "9",
       "--no-progress",
       "--result-json", results,
       "--scale-at", "1", "--scale-to", "3", "--scale-at", "4", "--scale-to", "2"},
      90s);
  // clang-format on
  INFO(bench.output);
  INFO(fleet.coordinator_log());
  REQUIRE(bench.exit_code == 0);
  const json report = json::parse(read_file(results));
  const double duration_s = report["summary"]["duration_s"];
  CHECK(duration_s > 4.5);  // the second scale was sent while requests ran
  CHECK_THAT(bench.output, Catch::Contains("Scale 1: 2 -> 3, sent at 1.0"));
  CHECK_THAT(bench.output, Catch::Contains("Scale 2: 3 -> 2, sent at 4.0"));

  const json& scales = report["scales"];
  REQUIRE(scales.size() == 2);
  const int from_dp[] = {2, 3};
  const int to_dp[] = {3, 2};
  for (size_t idx = 0; idx < scales.size(); ++idx) {
    const json& scale = scales[idx];
    INFO("scale " << idx + 1 << ": " << scale.dump());
    CHECK(scale["outcome"] == "succeeded");
    CHECK(scale["from_dp"] == from_dp[idx]);
    CHECK(scale["to_dp"] == to_dp[idx]);
    CHECK(scale["command_s"].get<double>() >= scale["at_s"].get<double>());
    CHECK(scale["command_s"].get<double>() < scale["at_s"].get<double>() + 0.5);
    CHECK(scale["accepted_s"].get<double>() >= scale["command_s"].get<double>());
    CHECK(scale["outcome_s"].get<double>() > scale["accepted_s"].get<double>());
    CHECK(scale["total_s"].get<double>() > 0);
    REQUIRE_FALSE(scale["timeline"].empty());
    for (const json& stage : scale["timeline"]) {
      CHECK_FALSE(stage["stage"].get<std::string>().empty());
      CHECK(stage["seconds"].get<double>() >= 0);
    }
    const json& windows = scale["windows"];
    CHECK(windows["before"]["end_s"] == scale["command_s"]);
    CHECK(windows["during"]["begin_s"] == scale["command_s"]);
    CHECK(windows["during"]["end_s"] == scale["outcome_s"]);
    CHECK(windows["after"]["begin_s"] == scale["outcome_s"]);
    // Serving went on around the scale: tokens before and after it.
    CHECK(windows["before"]["output_tokens"].get<double>() > 0);
    CHECK(windows["after"]["output_tokens"].get<double>() > 0);
    CHECK(windows["during"]["longest_gap_ms"].get<double>() > 0);
  }
  // The scale-up's new rank took every weight from the serving ranks (docs/weight_transfer.md).
  CHECK(scales[0]["weight_bytes_from_peers"].get<double>() > 0);
  CHECK(scales[0]["weight_bytes_from_checkpoint"] == 0);
  CHECK(scales[0]["weight_transfer_s"].get<double>() > 0);
  CHECK_THAT(bench.output, Catch::Contains("MB from peers in"));
  // WAIT_ACKS broken down by the ranks' build steps, each the slowest rank's.
  std::vector<std::string> build_steps;
  for (const json& step : scales[0]["build_stages"]) {
    build_steps.push_back(step["stage"]);
    CHECK(step["seconds"].get<double>() >= 0);
  }
  CHECK(build_steps ==
        std::vector<std::string>{"groups", "weights", "transfer", "kv_agree", "ep_warm_up"});
  CHECK_THAT(bench.output, Catch::Contains("(slowest rank)"));
  // The scale-down too: the leaving rank handed over what only it held.
  CHECK(scales[1]["weight_bytes_from_peers"].get<double>() > 0);
  CHECK(scales[1]["weight_bytes_from_checkpoint"] == 0);
  CHECK(scales[0]["windows"]["after"]["end_s"] == scales[1]["command_s"]);
  CHECK(scales[1]["windows"]["before"]["begin_s"] == scales[0]["outcome_s"]);
  // No request may fail across a scale-up or a scale-down.
  CHECK(report["summary"]["failed"] == 0);
  CHECK(report["summary"]["completed"] == 480);
  REQUIRE(eventually([&] { return fleet.has_active(2); }, 10s));

  // scripts/eep-scale.py: beyond --max-workers is refused (exit 2), then to 1 and back to 2.
  const std::string python = python_with_zmq();
  CommandResult refused =
      run_command({python, eep_scale_script(), "--admin", fleet.admin(), "--dp", "4"}, 20s);
  INFO(refused.output);
  CHECK(refused.exit_code == 2);
  CHECK_THAT(refused.output, Catch::Contains("resource_exhausted"));

  CommandResult down = run_command(
      {python, eep_scale_script(), "--admin", fleet.admin(), "--dp", "1", "--wait-s", "60"}, 70s);
  INFO(down.output);
  CHECK(down.exit_code == 0);
  CHECK_THAT(down.output, Catch::Contains("scaled 2 -> 1 in "));
  CHECK_THAT(down.output, Catch::Contains("WAIT_WORKERS"));  // the timeline
  CHECK(fleet.has_active(1));

  CommandResult up = run_command(
      {python, eep_scale_script(), "--admin", fleet.admin(), "--dp", "2", "--wait-s", "60"}, 70s);
  INFO(up.output);
  CHECK(up.exit_code == 0);
  CHECK_THAT(up.output, Catch::Contains("scaled 1 -> 2 in "));
  CHECK_THAT(up.output, Catch::Contains("WAIT_ACKS"));
  CHECK(fleet.has_active(2));
  // The size it already has: nothing to do, exit 0.
  CommandResult same =
      run_command({python, eep_scale_script(), "--admin", fleet.admin(), "--dp", "2"}, 20s);
  INFO(same.output);
  CHECK(same.exit_code == 0);
  CHECK_THAT(same.output, Catch::Contains("already at dp 2"));
}

TEST_CASE("eep-scale.py sends the admin token from --token-file, and exits 2 when refused",
          "[scale_tools]") {
  TempDir secrets;
  write_file(secrets.file("admin.token"), "s3cret\n", 0600);
  Fleet fleet({"--dp", "0", "--admin-token-file", secrets.file("admin.token")});
  const std::string python = python_with_zmq();

  CommandResult without =
      run_command({python, eep_scale_script(), "--admin", fleet.admin(), "--dp", "1"}, 20s);
  INFO(without.output);
  CHECK(without.exit_code == 2);
  CHECK_THAT(without.output, Catch::Contains("unauthenticated"));

  CommandResult with = run_command({python, eep_scale_script(), "--admin", fleet.admin(), "--dp",
                                    "1", "--token-file", secrets.file("admin.token")},
                                   40s);
  INFO(with.output);
  INFO(fleet.coordinator_log());
  CHECK(with.exit_code == 0);
  CHECK_THAT(with.output, Catch::Contains("scaled 0 -> 1 in "));

  // Shut it down with the token (the fixture's own shutdown has none).
  run_command({bin("eepctl"), "--admin", fleet.admin(), "--token-file", secrets.file("admin.token"),
               "shutdown"},
              10s);
  CHECK(fleet.coordinator().wait_for(10s));
}
