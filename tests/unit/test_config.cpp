#include <CLI/CLI.hpp>
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "eep/common/config.h"
#include "eep/worker/daemon/worker_config.h"

namespace {

struct Parsed {
  int dp = 1;
  std::string launcher = "local";
  std::vector<std::string> ranges = {"1-2"};
  std::optional<int> exit_code;
};

Parsed parse(std::vector<std::string> args) {
  Parsed parsed;
  CLI::App app;
  eep::add_config_option(app);
  app.add_option("--dp", parsed.dp);
  app.add_option("--launcher", parsed.launcher);
  app.add_option("--port-range", parsed.ranges)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  args.insert(args.begin(), "prog");
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  parsed.exit_code = eep::parse_args(app, static_cast<int>(argv.size()), argv.data());
  return parsed;
}

}  // namespace

TEST_CASE("configuration precedence: default < file < environment < flag", "[config]") {
  const auto path = std::filesystem::temp_directory_path() / "eep_test_config.toml";
  {
    std::ofstream file(path);
    file << "dp = 3\nlauncher = \"systemd\"\nport_range = [\"5-6\", \"7-8\"]\n";
  }
  ::unsetenv("EEP_DP");
  ::unsetenv("EEP_LAUNCHER");
  CHECK(parse({}).dp == 1);
  Parsed from_file = parse({"--config", path.string()});
  CHECK(from_file.dp == 3);
  CHECK(from_file.launcher == "systemd");
  CHECK(from_file.ranges == std::vector<std::string>{"5-6", "7-8"});

  ::setenv("EEP_DP", "5", 1);
  CHECK(parse({"--config", path.string()}).dp == 5);
  CHECK(parse({"--config", path.string()}).launcher == "systemd");
  CHECK(parse({"--config", path.string(), "--dp", "7"}).dp == 7);
  CHECK(parse({"--dp=8"}).dp == 8);
  ::unsetenv("EEP_DP");
  std::filesystem::remove(path);
}

TEST_CASE("bad configuration is a clear error, not a crash", "[config]") {
  const auto path = std::filesystem::temp_directory_path() / "eep_test_bad_config.toml";
  {
    std::ofstream file(path);
    file << "no_such_option = 1\n";
  }
  CHECK(parse({"--config", path.string()}).exit_code.value_or(0) != 0);
  CHECK(parse({"--config", "/nonexistent/eep.toml"}).exit_code.value_or(0) != 0);
  CHECK(parse({"--dp", "many"}).exit_code.value_or(0) != 0);
  ::setenv("EEP_DP", "lots", 1);
  CHECK(parse({}).exit_code.value_or(0) != 0);
  ::unsetenv("EEP_DP");
  std::filesystem::remove(path);
  CHECK(eep::env_name_for("admin-token-file") == "EEP_ADMIN_TOKEN_FILE");
}

namespace {

// eep-worker's flags parsed into `config`; parse_args's exit code when they are refused.
std::optional<int> parse_worker(std::vector<std::string> args, eep::worker::WorkerConfig& config) {
  CLI::App app;
  eep::worker::add_worker_options(app, config);
  args.insert(args.begin(), "eep-worker");
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  return eep::parse_args(app, static_cast<int>(argv.size()), argv.data());
}

}  // namespace

TEST_CASE("the worker's CUDA numerics flags parse and refuse unknown values", "[config]") {
  using eep::worker::MoeCombine;
  eep::worker::WorkerConfig defaults;
  CHECK(!parse_worker({}, defaults).has_value());
  CHECK(defaults.engine.backend.moe_combine == MoeCombine::kExact);
  CHECK(!defaults.engine.backend.batch_invariant);
  eep::worker::WorkerConfig set;
  CHECK(!parse_worker({"--moe-combine", "rank-partials", "--batch-invariant"}, set).has_value());
  CHECK(set.engine.backend.moe_combine == MoeCombine::kRankPartials);
  CHECK(set.engine.backend.batch_invariant);
  eep::worker::WorkerConfig bad;
  CHECK(parse_worker({"--moe-combine", "fast"}, bad).value_or(0) != 0);
}

TEST_CASE("the worker's options nest: the engine's hold the backend's, the device an enum",
          "[config]") {
  using namespace std::chrono_literals;
  eep::worker::WorkerConfig defaults;
  REQUIRE(!parse_worker({}, defaults).has_value());
  CHECK(defaults.engine.backend.device == eep::worker::Device::kCpu);
  CHECK(defaults.engine.backend.group_timeout == eep::worker::kDefaultGroupTimeout);
  CHECK(defaults.engine.weight_transfer_chunk_bytes == size_t{64} << 20);
  CHECK(defaults.engine.step_times_interval == 0ms);
  eep::worker::WorkerConfig set;
  REQUIRE(!parse_worker({"--device", "cuda", "--device-idx", "3", "--model", "/m", "--kv-blocks",
                         "77", "--group-timeout-ms", "1500", "--weight-transfer-chunk-kb", "256",
                         "--log-step-times-s", "2.5"},
                        set)
               .has_value());
  CHECK(set.engine.step_times_interval == 2500ms);
  CHECK(set.engine.backend.device == eep::worker::Device::kCuda);
  CHECK(set.engine.backend.device_idx == 3);
  CHECK(set.engine.model_dir == "/m");
  CHECK(set.engine.backend.num_kv_blocks == 77);
  CHECK(set.engine.backend.group_timeout == 1500ms);
  CHECK(set.engine.weight_transfer_chunk_bytes == 256 * 1024);
  eep::worker::WorkerConfig bad;
  CHECK(parse_worker({"--device", "tpu"}, bad).value_or(0) != 0);
  CHECK(parse_worker({"--group-timeout-ms", "5"}, bad).value_or(0) != 0);
  CHECK(parse_worker({"--log-step-times-s", "-1"}, bad).value_or(0) != 0);
}
