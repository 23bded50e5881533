// A scale that fails rolls back (issue "Elastic scaling", acceptance "Rollback"): a new worker
// killed while generation g+1's weights load, and a new worker stalled (SIGSTOP) past the
// stage's deadline. Each time: the scale is reported failed with its reason, the fleet serves at
// the old size throughout (eep-bench running across it, no failed request), no process or store
// port is left behind, and the next scale succeeds. The exact point comes from the test hook
// EEP_TEST_PAUSE_AT (docs/scaling.md): every worker's build of generation 2 waits before its
// weights until the test creates the resume file.
#include <signal.h>

#include <future>

#include "fleet.h"

using namespace eep;
using namespace eep::testing;

namespace {

struct RollbackFleet {
  TempDir dir;
  std::string model;
  std::unique_ptr<Fleet> fleet;

  RollbackFleet(const std::string& scale_timeout_ms, const std::string& heartbeat_timeout_ms) {
    model = make_tiny_model(dir, 9);
    fleet = std::make_unique<Fleet>(
        std::vector<std::string>{"--dp", "2", "--model", model, "--worker-arg=--kv-blocks=256",
                                 "--scale-timeout-ms", scale_timeout_ms, "--heartbeat-timeout-ms",
                                 heartbeat_timeout_ms},
        std::map<std::string, std::string>{{"EEP_TEST_PAUSE_AT", "build_weights"},
                                           {"EEP_TEST_PAUSE_GENERATION", "2"},
                                           {"EEP_TEST_RESUME_FILE", resume_file()}});
    REQUIRE(eventually([&] { return fleet->has_active(2); }, 30s));
  }

  std::string resume_file() const { return dir.file("resume"); }
  void resume() { write_file(resume_file(), "go\n"); }

  // Continuous streaming load while the scale runs.
  std::future<CommandResult> start_load() {
    return std::async(std::launch::async, [this] {
      return run_command(
          {bin("eep-bench"), "--base-url", fleet->base_url(), "--num-prompts", "160",
           "--random-input-len", "16", "--random-output-len", "48", "--max-concurrency", "16",
           "--request-rate", "40", "--seed", "2", "--no-progress"},
          180s);
    });
  }

  // Returns once requests of the load run on the fleet (the workers' reported load).
  void wait_for_requests_in_flight() {
    REQUIRE(eventually(
        [&] {
          for (const json& worker : fleet->workers_in("ACTIVE")) {
            if (worker["load"]["num_running"].get<int>() > 0) return true;
          }
          return false;
        },
        30s));
  }

  // `eepctl scale --dp N --json`, which waits for the outcome.
  std::future<CommandResult> start_scale(int dp) {
    return std::async(std::launch::async, [this, dp] {
      return fleet->eepctl({"scale", "--dp", std::to_string(dp), "--json"}, 120s);
    });
  }

  // The pid of the worker that joins for generation 2, once every worker paused before its
  // weights (the new one has registered and built its groups).
  json paused_new_worker() {
    json joining;
    const bool paused = eventually(
        [&] {
          for (const json& worker : fleet->workers_in("JOINING")) joining = worker;
          if (joining.is_null()) return false;
          const std::string log =
              read_file(fleet->dir().file(joining["id"].get<std::string>() + ".log"));
          return log.find("test hook: paused at build_weights") != std::string::npos;
        },
        30s);
    INFO(fleet->coordinator_log());
    REQUIRE(paused);
    return joining;
  }

  void check_after_rollback(const CommandResult& scaled, const std::string& reason, pid_t new_pid,
                            std::future<CommandResult>& load) {
    INFO(scaled.output);
    INFO(fleet->coordinator_log());
    CHECK(scaled.exit_code == 1);
    const json outcome = json::parse(scaled.output);
    CHECK(outcome["ok"] == false);
    CHECK(outcome["scale"]["state"] == "failed");
    CHECK_THAT(outcome["scale"]["reason"].get<std::string>(), Catch::Contains(reason));
    CHECK_FALSE(outcome["scale"]["timeline"].empty());

    // The old size served throughout.
    const json status = fleet->status();
    CHECK(status["active_dp"] == 2);
    CHECK(status["generation"] == 1);
    CHECK(eventually([&] { return !process_alive(new_pid); }, 15s));
    CHECK(eventually([&] { return fleet->status()["num_store_ports_live"] == 2; }, 5s));
    const CommandResult bench = load.get();
    INFO(bench.output);
    CHECK(bench.exit_code == 0);
    CHECK_THAT(bench.output, Catch::Contains("Successful requests:                     160"));

    // Every worker process that is not a member is gone.
    for (const json& worker : fleet->status()["workers"]) {
      if (worker["state"] == "ACTIVE") continue;
      INFO("worker " << worker.dump());
      CHECK(eventually([&] { return !process_alive(worker["pid"].get<pid_t>()); }, 15s));
    }

    // The next scale (generation 3: no pause) succeeds and the fleet serves at its size.
    CommandResult next = fleet->eepctl({"scale", "--dp", "3", "--json"}, 60s);
    INFO(next.output);
    CHECK(next.exit_code == 0);
    CHECK(fleet->has_active(3));
    CHECK(fleet->status()["generation"] == 3);
    CommandResult after =
        run_command({bin("eep-bench"), "--base-url", fleet->base_url(), "--num-prompts", "24",
                     "--random-input-len", "16", "--random-output-len", "8", "--no-progress"},
                    60s);
    INFO(after.output);
    CHECK_THAT(after.output, Catch::Contains("Successful requests:                     24"));
  }
};

}  // namespace

TEST_CASE("a new worker killed while the weights of g+1 load rolls the scale back",
          "[scale_rollback]") {
  RollbackFleet f("30000", "3000");
  auto load = f.start_load();
  f.wait_for_requests_in_flight();
  auto scale = f.start_scale(3);
  const json joining = f.paused_new_worker();
  const pid_t pid = joining["pid"].get<pid_t>();
  REQUIRE(::kill(pid, SIGKILL) == 0);
  // The old ranks' builds go on (and fail on the dead peer) in the background.
  f.resume();
  f.check_after_rollback(scale.get(), "lost", pid, load);
}

TEST_CASE("a new worker stalled past the stage deadline rolls the scale back", "[scale_rollback]") {
  // The heartbeat timeout is longer than the stage's deadline, so the deadline is what fires.
  RollbackFleet f("3000", "20000");
  auto load = f.start_load();
  f.wait_for_requests_in_flight();
  auto scale = f.start_scale(3);
  const json joining = f.paused_new_worker();
  const pid_t pid = joining["pid"].get<pid_t>();
  REQUIRE(::kill(pid, SIGSTOP) == 0);
  f.resume();  // the others go on; the stopped one never acknowledges
  f.check_after_rollback(scale.get(), "deadline", pid, load);
}
