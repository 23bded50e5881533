// Fault tolerance (docs/fault_tolerance.md): a CPU fleet on the tiny model serves eep-bench
// (concurrency 32, greedy, streamed, --save-tokens) while eep-bench's --kill-at signals a worker:
// kill -9 of rank 1, kill -9 of rank 0, SIGSTOP of rank 1, and kill -9 of two of four ranks at
// once. Every time every request succeeds, every greedy output equals that of the same requests
// on the same fleet before any fault, and the fleet is back at its target size. Each fault's
// longest token gap and the time from the signal to the recovered generation are printed (the
// aims in docs/benchmarks.md), not asserted.
#include <future>
#include <thread>

#include "fleet.h"

using namespace eep;
using namespace eep::testing;

namespace {

constexpr int kNumPrompts = 192;
// At most this many requests per second: the faulted runs last at least 3.8 s, longer than a
// fault at 1.5 s and its recovery.
constexpr int kRequestRate = 50;
constexpr int kHeartbeatTimeoutMs = 1000;

std::vector<std::string> bench_argv(Fleet& fleet, const std::string& results,
                                    const std::vector<std::string>& faults) {
  // clang-format off
  std::vector<std::string> argv = {
      bin("eep-bench"), "--base-url", fleet.base_url(), "--admin", fleet.admin(),
      "--num-prompts", std::to_string(kNumPrompts), "--random-input-len", "16",
      "--random-output-len", "48", "--random-range-ratio", "0.5", "--max-concurrency", "32",
      "--request-rate", std::to_string(kRequestRate), "--stream", "--seed", "23",
      "--save-tokens", "--no-progress", "--result-json", results};
  // clang-format on
  argv.insert(argv.end(), faults.begin(), faults.end());
  return argv;
}

// Runs eep-bench with `faults` and checks what the acceptance asks: every request succeeded with
// the reference's greedy output, each fault recovered, the fleet is back at `size`.
void run_faulted(Fleet& fleet, const std::string& name, const std::vector<std::string>& faults,
                 const std::map<int, json>& expected, size_t size, uint64_t rank_bytes) {
  const std::string results = fleet.dir().file(name + ".json");
  const CommandResult bench = run_command(bench_argv(fleet, results, faults), 180s);
  std::printf("---- %s ----\n%s\n", name.c_str(), bench.output.c_str());
  INFO(bench.output);
  INFO(fleet.coordinator_log());
  REQUIRE(bench.exit_code == 0);
  const json report = json::parse(read_file(results));
  check_served_as_expected(report, expected, kNumPrompts);
  REQUIRE(report["faults"].size() == 1);
  const json& fault = report["faults"][0];
  INFO(fault.dump(2));
  CHECK(fault["error"] == "");
  CHECK(fault["recovered_s"].get<double>() > fault["signal_s"].get<double>());
  CHECK(fault["back_to_size_s"].get<double>() >= fault["recovered_s"].get<double>());
  std::printf(
      "%s: longest token gap during the fault %.0f ms, signal to recovered generation "
      "%.2f s (coordinator: loss to recovered %.3f s), back to dp %zu after %.2f s\n",
      name.c_str(), fault["windows"]["during"]["longest_gap_ms"].get<double>(),
      fault["recovered_s"].get<double>() - fault["signal_s"].get<double>(),
      fault["coordinator_recovery_s"].get<double>(), size,
      fault["back_to_size_s"].get<double>() - fault["signal_s"].get<double>());
  // Back at the target size, and no process of a lost worker is left.
  CHECK(eventually([&] { return fleet.has_active(size); }, 20s));
  for (const json& target : fault["targets"]) {
    CHECK(eventually([&] { return !process_alive(target["pid"].get<pid_t>()); }, 10s));
  }
  // The survivors kept their weights (docs/fault_tolerance.md): only the experts that no survivor
  // held came from the checkpoint, less than the recovered ranks' whole weights (each rank of the
  // smaller generation holds at least what a rank of the formation read).
  const json status = fleet.status();
  const json* recovery = nullptr;
  for (const json& scale : status["recent_scales"]) {
    if (scale["kind"] == "recover" && scale["state"] == "succeeded") recovery = &scale;
  }
  REQUIRE(recovery != nullptr);
  INFO(recovery->dump(2));
  const uint64_t from_checkpoint = (*recovery)["weight_bytes_from_checkpoint"];
  const uint64_t from_peers = (*recovery)["weight_bytes_from_peers"];
  CHECK(from_checkpoint < (*recovery)["to_dp"].get<uint64_t>() * rank_bytes);
  std::printf(
      "%s: the recovery read %llu bytes of weights from the checkpoint (a rank's whole "
      "weights: %llu) and took %llu from the survivors\n",
      name.c_str(), static_cast<unsigned long long>(from_checkpoint),
      static_cast<unsigned long long>(rank_bytes), static_cast<unsigned long long>(from_peers));
}

// The weight bytes one rank of the fleet's formation (every rank from the checkpoint) read.
uint64_t formation_rank_bytes(Fleet& fleet) {
  const json formation = fleet.status()["scale"];
  INFO(formation.dump(2));
  REQUIRE(formation["from_dp"] == 0);
  REQUIRE(formation["weight_bytes_from_peers"] == 0);
  return formation["weight_bytes_from_checkpoint"].get<uint64_t>() /
         formation["to_dp"].get<uint64_t>();
}

std::map<int, json> reference_outputs(Fleet& fleet) {
  const std::string results = fleet.dir().file("reference.json");
  const CommandResult reference = run_command(bench_argv(fleet, results, {}), 180s);
  INFO(reference.output);
  REQUIRE(reference.exit_code == 0);
  const json report = json::parse(read_file(results));
  REQUIRE(report["summary"]["failed"] == 0);
  std::map<int, json> expected = outputs_by_request(report);
  REQUIRE(expected.size() == static_cast<size_t>(kNumPrompts));
  return expected;
}

std::vector<std::string> fleet_flags(const std::string& model, int dp) {
  return {"--dp",
          std::to_string(dp),
          "--model",
          model,
          "--worker-arg=--kv-blocks=256",
          "--heartbeat-timeout-ms",
          std::to_string(kHeartbeatTimeoutMs),
          "--max-workers",
          "8"};
}

// The fleet has `size` ACTIVE workers again, none of them one of the `killed` processes.
bool formed_anew(Fleet& fleet, const std::vector<pid_t>& killed, size_t size) {
  const auto active = fleet.workers_in("ACTIVE");
  return active.size() == size && std::none_of(active.begin(), active.end(), [&](const json& w) {
           return std::find(killed.begin(), killed.end(), w["pid"].get<pid_t>()) != killed.end();
         });
}

}  // namespace

TEST_CASE("kill -9 of rank 1 or rank 0 and SIGSTOP of rank 1 under load lose no request",
          "[fault_tolerance]") {
  TempDir dir;
  const std::string model = make_tiny_model(dir, 13);
  Fleet fleet(fleet_flags(model, 3));
  REQUIRE(eventually([&] { return fleet.has_active(3); }, 30s));
  const uint64_t rank_bytes = formation_rank_bytes(fleet);
  const std::map<int, json> expected = reference_outputs(fleet);

  run_faulted(fleet, "kill-rank-1", {"--kill-at", "1.5", "--kill-rank", "1"}, expected, 3,
              rank_bytes);
  run_faulted(fleet, "kill-rank-0", {"--kill-at", "1.5", "--kill-rank", "0"}, expected, 3,
              rank_bytes);
  run_faulted(fleet, "stop-rank-1",
              {"--kill-at", "1.5", "--kill-rank", "1", "--kill-signal", "STOP"}, expected, 3,
              rank_bytes);

  const json status = fleet.status();
  INFO(status.dump(2));
  CHECK(status["health"]["num_failures"] == 3);
  CHECK(status["health"]["num_recoveries"] == 3);
  CHECK(status["health"]["num_restarts"] == 3);
  CHECK(status["health"]["target_dp"] == 3);
  // The stopped worker was declared dead for its silence, and killed.
  CHECK_THAT(status["health"]["last_failure"].get<std::string>(), Catch::Contains("heartbeat"));
}

TEST_CASE("kill -9 of two of four ranks at once under load loses no request", "[fault_tolerance]") {
  TempDir dir;
  const std::string model = make_tiny_model(dir, 13);
  Fleet fleet(fleet_flags(model, 4));
  REQUIRE(eventually([&] { return fleet.has_active(4); }, 30s));
  const uint64_t rank_bytes = formation_rank_bytes(fleet);
  const std::map<int, json> expected = reference_outputs(fleet);
  run_faulted(fleet, "kill-ranks-1-2",
              {"--kill-at", "1.5", "--kill-rank", "1", "--kill-at", "1.5", "--kill-rank", "2"},
              expected, 4, rank_bytes);
  const json status = fleet.status();
  INFO(status.dump(2));
  CHECK(status["health"]["num_failures"] == 2);
  CHECK(status["health"]["num_recoveries"] == 1);
  // Both losses were rebuilt around (4 -> 2): in one recovery when the coordinator saw them
  // within its 50 ms settle; or, when the second process took longer to die (a loaded machine:
  // 177 ms once), the recovery it undid was retried at once, not backed off as a failure.
  const std::string log = fleet.coordinator_log();
  CHECK_THAT(log, Catch::Contains("recover 2->2 accepted"));
  if (log.find("failed, rolling back") == std::string::npos) {
    std::printf("kill-ranks-1-2: both losses seen within the settle, one recovery\n");
  } else {
    std::printf(
        "kill-ranks-1-2: the losses were seen apart; the second undid the first recovery\n");
    CHECK_THAT(log, Catch::Contains("recovering again around every loss, at once"));
    CHECK_THAT(log, !Catch::Contains("trying again with backoff"));
  }
}

// The case "kill -9 of two of four ranks at once" meets when the second process takes longer to
// die than the recovery's settle, made exact with the build hook: the recovery around rank 1
// waits in its groups' build when rank 2 is killed.
TEST_CASE("a loss seen while a recovery builds undoes it and the next recovery starts at once",
          "[fault_tolerance]") {
  TempDir dir;
  const std::string model = make_tiny_model(dir, 13);
  const std::string resume = dir.file("resume");
  Fleet fleet(fleet_flags(model, 4), {{"EEP_TEST_PAUSE_AT", "build_groups"},
                                      {"EEP_TEST_PAUSE_GENERATION", "2"},
                                      {"EEP_TEST_RESUME_FILE", resume}});
  REQUIRE(eventually([&] { return fleet.has_active(4); }, 30s));
  const json members = fleet.workers_in("ACTIVE");
  REQUIRE(members.size() == 4);
  REQUIRE(::kill(members[1]["pid"].get<pid_t>(), SIGKILL) == 0);
  // The recovery (generation 2) builds on the three survivors and waits at the hook.
  const bool paused = eventually(
      [&] {
        for (const int rank : {0, 2, 3}) {
          const std::string id = members[rank]["id"];
          if (read_file(fleet.dir().file(id + ".log")).find("test hook: paused at build_groups") ==
              std::string::npos) {
            return false;
          }
        }
        return true;
      },
      30s);
  INFO(fleet.coordinator_log());
  REQUIRE(paused);
  REQUIRE(::kill(members[2]["pid"].get<pid_t>(), SIGKILL) == 0);
  REQUIRE(eventually(
      [&] {
        return fleet.coordinator_log().find("recovering again around every loss, at once") !=
               std::string::npos;
      },
      30s));
  write_file(resume, "go\n");  // builds abandoned at the pause end now

  // Recovered around both losses, then back to 4 with new workers.
  REQUIRE(eventually(
      [&] { return fleet.has_active(4) && fleet.status()["scale"]["state"] != "running"; }, 60s));
  const json status = fleet.status();
  INFO(status.dump(2));
  CHECK(status["health"]["num_failures"] == 2);
  CHECK(status["health"]["num_recoveries"] == 1);
  CHECK_FALSE(status["health"].contains("gave_up"));
  CHECK_THAT(fleet.coordinator_log(), Catch::Contains("recover 2->2 accepted"));
  check_serves_load(fleet, 16);
}

TEST_CASE(
    "a worker that crashes at start is relaunched up to --max-restarts and then the fleet "
    "serves at its smaller size",
    "[fault_tolerance]") {
  TempDir dir;
  const std::string model = make_tiny_model(dir, 13);
  const std::string crash_file = dir.file("crash");
  Fleet fleet({"--dp", "3", "--model", model, "--worker-arg=--kv-blocks=256", "--max-restarts", "3",
               "--restart-window-s", "600"},
              {{"EEP_TEST_CRASH_AT_START_FILE", crash_file}});
  REQUIRE(eventually([&] { return fleet.has_active(3); }, 30s));
  // From now on every worker launched exits at start.
  write_file(crash_file, "crash\n");
  const json lost = fleet.workers_in("ACTIVE")[1];
  REQUIRE(::kill(lost["pid"].get<pid_t>(), SIGKILL) == 0);

  // Recovered at 2, then three relaunches crash (backoff 0.5 s, 1 s between them) and the
  // coordinator gives up.
  REQUIRE(eventually([&] { return fleet.status()["health"].contains("gave_up"); }, 30s));
  const json status = fleet.status();
  INFO(status.dump(2));
  INFO(fleet.coordinator_log());
  CHECK_THAT(status["health"]["gave_up"].get<std::string>(),
             Catch::Contains("3 scales toward dp 3 failed"));
  CHECK(status["health"]["num_restarts"] == 3);
  CHECK(status["health"]["num_recoveries"] == 1);
  CHECK(status["active_dp"] == 2);
  const CommandResult text = fleet.eepctl({"status"});
  CHECK_THAT(text.output, Catch::Contains("GAVE UP"));

  // It stays given up (no fourth launch) and serves at dp 2.
  std::this_thread::sleep_for(2s);
  CHECK(fleet.status()["health"]["num_restarts"] == 3);
  check_serves_load(fleet, 24);

  // The crash is fixed: an operator's scale starts over, and succeeds.
  std::filesystem::remove(crash_file);
  const CommandResult scaled = fleet.eepctl({"scale", "--dp", "3"}, 60s);
  INFO(scaled.output);
  CHECK(scaled.exit_code == 0);
  CHECK(fleet.has_active(3));
  CHECK_FALSE(fleet.status()["health"].contains("gave_up"));
}

TEST_CASE(
    "two fleets on one host with one store port range both form and serve and a port "
    "another process holds is skipped",
    "[fault_tolerance]") {
  TempDir dir;
  const std::string model = make_tiny_model(dir, 13);
  // The range's first port is held by a listener that is no fleet's store.
  const int first = 20000 + (::getpid() * 13) % 9000;
  zmq::context_t context;
  zmq::socket_t holder(context, zmq::socket_type::rep);
  holder.bind("tcp://127.0.0.1:" + std::to_string(first));
  const std::string range = std::to_string(first) + "-" + std::to_string(first + 19);
  std::vector<std::string> flags = {
      "--dp", "2", "--model", model, "--worker-arg=--kv-blocks=256", "--port-range", range};
  Fleet one(flags);
  REQUIRE(eventually([&] { return one.has_active(2); }, 30s));
  // The second fleet starts beside the first, whose store ports it must skip.
  Fleet two(flags);
  REQUIRE(eventually([&] { return two.has_active(2); }, 30s));
  for (Fleet* fleet : {&one, &two}) {
    INFO(fleet->coordinator_log());
    check_serves_load(*fleet, 16);
    // Each formed at its first try: the held port and the other fleet's were skipped.
    CHECK_THAT(fleet->coordinator_log(), !Catch::Contains("Address already in use"));
    CHECK_THAT(fleet->coordinator_log(), !Catch::Contains("failed, rolling back"));
  }
}

namespace {

// A fleet of 2 serving eep-bench while a scale to 3 runs, and rank 1 (an old member) killed at
// `point` of that scale: "wait_workers" (the new worker registers 3 s after its start), or a point
// of the build of generation 2 (EEP_TEST_PAUSE_AT, docs/scaling.md). The scale fails, the fleet
// recovers and returns to 2, no request fails, and the next scale succeeds.
void kill_member_during_scale(const std::string& point) {
  TempDir dir;
  const std::string model = make_tiny_model(dir, 13);
  const std::string resume = dir.file("resume");
  std::vector<std::string> flags = fleet_flags(model, 2);
  // The survivor's abandoned build of generation 2 waits for its lost peers this long once
  // resumed (and the worker's exit waits for it).
  flags.push_back("--worker-arg=--group-timeout-ms=5000");
  std::map<std::string, std::string> env;
  if (point == "wait_workers") {
    flags.push_back("--worker-arg=--test-register-delay-ms=3000");
  } else {
    env = {{"EEP_TEST_PAUSE_AT", point},
           {"EEP_TEST_PAUSE_GENERATION", "2"},
           {"EEP_TEST_RESUME_FILE", resume}};
  }
  Fleet fleet(flags, env);
  REQUIRE(eventually([&] { return fleet.has_active(2); }, 30s));
  auto load = std::async(std::launch::async, [&] {
    return run_command(
        {bin("eep-bench"), "--base-url", fleet.base_url(), "--num-prompts", "200",
         "--random-input-len", "16", "--random-output-len", "48", "--max-concurrency", "16",
         "--request-rate", "40", "--seed", "2", "--no-progress"},
        180s);
  });
  auto scale = std::async(std::launch::async, [&] {
    return fleet.eepctl({"scale", "--dp", "3", "--json"}, 120s);
  });
  // The moment: the scale waits for the new worker, or every rank paused at `point`.
  const bool at_point = eventually(
      [&] {
        const json status = fleet.status();
        if (point == "wait_workers") return status["scale"]["stage"] == "WAIT_WORKERS";
        for (const char* id : {"w0", "w1", "w2"}) {
          const std::string log = read_file(fleet.dir().file(std::string(id) + ".log"));
          if (log.find("test hook: paused at " + point) == std::string::npos) return false;
        }
        return true;
      },
      30s);
  INFO(fleet.coordinator_log());
  REQUIRE(at_point);
  const json member = fleet.workers_in("ACTIVE")[1];
  REQUIRE(::kill(member["pid"].get<pid_t>(), SIGKILL) == 0);

  const CommandResult scaled = scale.get();
  INFO(scaled.output);
  CHECK(scaled.exit_code == 1);  // the scale failed: its generation lost a member
  write_file(resume, "go\n");    // builds abandoned at the pause end now
  const CommandResult bench = load.get();
  INFO(bench.output);
  CHECK_THAT(bench.output, Catch::Contains("Successful requests:                     200"));
  REQUIRE(eventually([&] { return fleet.has_active(2); }, 20s));
  const json status = fleet.status();
  CHECK(status["health"]["num_recoveries"] == 1);
  CHECK(status["health"]["target_dp"] == 2);  // the failed scale did not move the target
  const CommandResult next = fleet.eepctl({"scale", "--dp", "3"}, 60s);
  INFO(next.output);
  CHECK(next.exit_code == 0);
  CHECK(fleet.has_active(3));
  CHECK(eventually([&] { return fleet.status()["num_store_ports_live"] == 2; }, 5s));
}

}  // namespace

TEST_CASE("a member killed while a scale waits for its new worker", "[fault_tolerance]") {
  kill_member_during_scale("wait_workers");
}

TEST_CASE("a member killed while a scale builds its groups", "[fault_tolerance]") {
  kill_member_during_scale("build_groups");
}

TEST_CASE("a member killed while a scale loads its weights", "[fault_tolerance]") {
  kill_member_during_scale("build_weights");
}

TEST_CASE("a fleet that lost every worker forms anew from the checkpoint", "[fault_tolerance]") {
  TempDir dir;
  const std::string model = make_tiny_model(dir, 13);
  Fleet fleet(fleet_flags(model, 2));
  REQUIRE(eventually([&] { return fleet.has_active(2); }, 30s));
  std::vector<pid_t> killed;
  for (const json& worker : fleet.workers_in("ACTIVE")) killed.push_back(worker["pid"]);
  for (pid_t pid : killed) REQUIRE(::kill(pid, SIGKILL) == 0);
  // No survivor and no spare: the fleet forms anew (new processes, weights from the checkpoint,
  // not from the dead generation's ranks) and serves.
  REQUIRE(eventually([&] { return formed_anew(fleet, killed, 2); }, 30s));
  INFO(fleet.coordinator_log());
  CHECK_THAT(fleet.coordinator_log(), Catch::Contains("has no survivor and no spare waits"));
  const json scale = fleet.status()["scale"];
  CHECK(scale["weight_bytes_from_peers"] == 0);
  CHECK(scale["weight_bytes_from_checkpoint"].get<uint64_t>() > 0);
  check_serves_load(fleet, 16);
}

TEST_CASE(
    "requests wait while a fleet that lost every worker forms anew, and finish as an unfaulted "
    "fleet's",
    "[fault_tolerance]") {
  TempDir dir;
  const std::string model = make_tiny_model(dir, 13);
  Fleet fleet(fleet_flags(model, 2));
  REQUIRE(eventually([&] { return fleet.has_active(2); }, 30s));
  const std::map<int, json> expected = reference_outputs(fleet);

  const std::string results = fleet.dir().file("all-lost.json");
  auto bench = std::async(std::launch::async,
                          [&] { return run_command(bench_argv(fleet, results, {}), 180s); });
  // Both workers killed at once while they run requests: no survivor and no spare. The requests
  // wait in the coordinator (--request-hold-s, 30 s by default) while it forms the fleet anew,
  // and continue there from their tokens so far.
  std::vector<pid_t> killed;
  REQUIRE(eventually(
      [&] {
        const auto active = fleet.workers_in("ACTIVE");
        if (active.size() != 2) return false;
        for (const json& worker : active) {
          if (worker["load"]["num_running"].get<int>() == 0) return false;
        }
        for (const json& worker : active) killed.push_back(worker["pid"]);
        return true;
      },
      30s));
  const auto killed_at = std::chrono::steady_clock::now();
  for (pid_t pid : killed) REQUIRE(::kill(pid, SIGKILL) == 0);
  REQUIRE(eventually([&] { return formed_anew(fleet, killed, 2); }, 30s));
  std::printf("every worker lost: the fleet served again %.2f s after the kill\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count());
  const CommandResult bench_run = bench.get();
  INFO(bench_run.output);
  INFO(fleet.coordinator_log());
  REQUIRE(bench_run.exit_code == 0);
  check_served_as_expected(json::parse(read_file(results)), expected, kNumPrompts);
  CHECK_THAT(fleet.coordinator_log(), Catch::Contains("it waits for the fleet to form"));
  CHECK_THAT(fleet.coordinator_log(), !Catch::Contains("held requests failed"));
}

TEST_CASE("a leaving rank killed while a scale-down drains it: its stream continues whole",
          "[fault_tolerance]") {
  TempDir dir;
  const std::string model = make_tiny_model(dir, 13);
  std::vector<std::string> flags = fleet_flags(model, 3);
  flags.insert(flags.end(), {"--scale-drain-timeout-ms", "60000"});
  Fleet fleet(flags);
  REQUIRE(eventually([&] { return fleet.has_active(3); }, 30s));
  // Three long greedy streams, one per rank (each goes to the least loaded): the scale to 2
  // waits in DRAIN_LEAVING for the one on rank 2. 1500 tokens take seconds.
  constexpr int kMaxTokens = 1500;
  const std::vector<std::vector<int>> prompts = {{1, 2, 3}, {4, 5, 6}, {7, 8, 9}};
  std::vector<ChildProcess> streams;
  for (size_t idx = 0; idx < prompts.size(); ++idx) {
    streams.push_back(
        start_stream(dir, fleet, static_cast<int>(idx), join_ids(prompts[idx]), kMaxTokens));
  }
  auto scale = std::async(std::launch::async, [&] {
    return fleet.eepctl({"scale", "--dp", "2", "--json"}, 120s);
  });
  REQUIRE(eventually([&] { return fleet.status()["scale"]["stage"] == "DRAIN_LEAVING"; }, 20s));
  const json leaving = fleet.workers_in("ACTIVE")[2];
  REQUIRE(::kill(leaving["pid"].get<pid_t>(), SIGKILL) == 0);

  const CommandResult scaled = scale.get();
  INFO(scaled.output);
  INFO(fleet.coordinator_log());
  CHECK(scaled.exit_code == 1);  // rank 2 still served generation 1: it broke, the scale failed
  // Every stream ends whole: the one on the lost rank continued on a survivor, and each equals
  // eep-generate's greedy tokens.
  std::vector<std::string> prompt_texts;
  for (const auto& prompt : prompts) prompt_texts.push_back(join_ids(prompt));
  const std::vector<std::string> expected = eep_generate_outputs(model, prompt_texts, kMaxTokens);
  for (size_t idx = 0; idx < prompts.size(); ++idx) {
    INFO("stream " << idx);
    REQUIRE(streams[idx].wait_for(120s));
    const std::string sse = read_file(dir.file("stream" + std::to_string(idx) + ".out"));
    CHECK_THAT(sse, Catch::EndsWith("data: [DONE]\n\n"));
    const std::vector<int> ids = streamed_token_ids(sse);
    REQUIRE(ids.size() == static_cast<size_t>(kMaxTokens));
    CHECK(join_ids(ids) == expected[idx]);
  }
  CHECK(fleet.status()["health"]["num_recoveries"] == 1);
  // The failed scale-down did not move the target: the fleet returned to 3 ranks. The
  // scale-down asked for succeeds now.
  REQUIRE(eventually(
      [&] { return fleet.has_active(3) && fleet.status()["scale"]["state"] != "running"; }, 30s));
  const CommandResult next = fleet.eepctl({"scale", "--dp", "2"}, 60s);
  INFO(next.output);
  CHECK(next.exit_code == 0);
  CHECK(fleet.has_active(2));
}
