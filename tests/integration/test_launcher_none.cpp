// A fleet whose workers start by themselves (--launcher none, as systemd units on other hosts
// run them): they register as spares, form the fleet, serve, and all exit on `eepctl shutdown`
// although no launcher of the coordinator's could stop them.
#include "fleet.h"

using namespace eep;
using namespace eep::testing;

TEST_CASE("launcher none: self-started workers form the fleet, serve, and exit on shutdown",
          "[launcher_none]") {
  TempDir dir;
  const std::string model = make_tiny_model(dir, 3);
  Fleet fleet({"--launcher", "none", "--dp", "2", "--model", model});
  std::vector<ChildProcess> workers;
  for (int n = 0; n < 2; ++n) {
    SpawnOptions options;
    options.log_path = dir.file("worker" + std::to_string(n) + ".log");
    auto worker = ChildProcess::spawn({bin("eep-worker"), "--coordinator", fleet.control(),
                                       "--worker-id", "self-" + std::to_string(n), "--model", model,
                                       "--kv-blocks", "64", "--device-idx", std::to_string(n),
                                       // The address it advertises and binds (the default,
                                       // gethostname(), need not resolve here).
                                       "--host", "127.0.0.1"},
                                      options);
    REQUIRE(worker.is_ok());
    workers.push_back(std::move(worker).value());
  }
  const bool formed = eventually([&] { return fleet.has_active(2); }, 60s);
  INFO(fleet.coordinator_log() << read_file(dir.file("worker0.log")));
  REQUIRE(formed);
  std::string body;
  REQUIRE(curl_status(dir, "POST", fleet.base_url() + "/v1/completions",
                      R"({"model":"tiny","prompt":[1,2,3,4],"max_tokens":4,"temperature":0})",
                      &body) == 200);
  CHECK(json::parse(body)["usage"]["completion_tokens"] == 4);

  REQUIRE(fleet.eepctl({"shutdown"}).exit_code == 0);
  CHECK(fleet.coordinator().wait_for(20s));
  // Both ranks of the multi-rank generation exit, although no switch will come.
  for (ChildProcess& worker : workers) {
    const bool exited = worker.wait_for(20s);
    if (!exited) worker.stop(1s);
    CHECK(exited);
  }
}
