// The control plane across hosts (issue 16, docs/hosts.md, docs/security.md): a control socket
// on a host's address needs the fleet's keys. Without them (plaintext, or a keys directory with
// none that the coordinator would make for itself) the coordinator refuses to start and says why;
// with them, a worker host registers with its own key, and a host without its key cannot.
#include "hosts_fleet.h"

using namespace eep;
using namespace eep::testing;

TEST_CASE("a control socket on a host address needs keys, and a host without its key cannot join",
          "[hosts]") {
  NetworkHosts hosts({"coord", "h1", "h2"});
  TempDir dir;
  const FleetPlace place = coordinator_place(hosts);

  // Plaintext off loopback: refused, with the reason.
  {
    Fleet refused({"--dp", "0", "--launcher", "none", "--insecure-plaintext"}, {}, false, place);
    REQUIRE(refused.coordinator().wait_for(10s));
    CHECK(refused.coordinator().describe_exit() == "exited with 2");
    CHECK_THAT(refused.coordinator_log(),
               Catch::Contains("refusing --insecure-plaintext with a socket on tcp://" +
                               hosts.address(0)));
  }
  // No keys: the coordinator does not make them for a socket that other hosts reach.
  {
    const std::string empty = dir.file("no-keys");
    Fleet refused({"--dp", "0", "--launcher", "none", "--keys-dir", empty}, {}, false, place);
    REQUIRE(refused.coordinator().wait_for(10s));
    CHECK(refused.coordinator().describe_exit() == "exited with 2");
    CHECK_THAT(refused.coordinator_log(),
               Catch::Contains("refusing to serve tcp://" + hosts.address(0)));
    CHECK_THAT(refused.coordinator_log(), Catch::Contains("holds no coordinator.key"));
    CHECK_FALSE(std::filesystem::exists(empty + "/coordinator.key"));
  }

  // Keys made ahead, one per worker host: h1's worker registers with h1's key.
  const std::string model = make_tiny_model(dir, 37);
  const std::string keys = make_host_keys(dir, hosts);
  Fleet fleet({"--dp", "0", "--launcher", "none", "--keys-dir", keys, "--model", model}, {}, true,
              place);
  ChildProcess h1 = start_host_worker(dir, hosts, 1, 0, fleet.control(), keys, model);
  CHECK(eventually([&] { return fleet.workers_in("SPARE").size() == 1; }, 30s));

  // Host 2 with the coordinator's public key but without its own key: it cannot even try.
  const std::string h2_keys = dir.file("h2-keys");
  std::filesystem::create_directories(h2_keys);
  std::filesystem::copy_file(keys + "/coordinator.pub", h2_keys + "/coordinator.pub");
  auto h2_worker = [&](std::vector<std::string> key_flags) {
    std::vector<std::string> argv = hosts.in(2);
    argv.insert(argv.end(), {bin("eep-worker"), "--coordinator", fleet.control(), "--worker-id",
                             "h2-0", "--register-timeout-ms", "1500"});
    argv.insert(argv.end(), key_flags.begin(), key_flags.end());
    return run_command(argv, 20s);
  };
  const CommandResult keyless = h2_worker({"--keys-dir", h2_keys});
  INFO(keyless.output);
  CHECK(keyless.exit_code == 1);
  CHECK_THAT(keyless.output, Catch::Contains("worker.key"));
  // With host 1's key it is not heard as h2-0 (the key speaks for h1-* only)...
  const CommandResult borrowed = h2_worker({"--keys-dir", h2_keys, "--key-file", keys + "/h1.key"});
  INFO(borrowed.output);
  CHECK(borrowed.exit_code == 1);
  CHECK_THAT(borrowed.output, Catch::Contains("no answer from the coordinator"));
  CHECK_THAT(fleet.coordinator_log(),
             Catch::Contains("dropped a control message sent as 'h2-0' by a connection whose key "
                             "speaks for 'worker:h1-*'"));
  // ...a key of another fleet is refused at the handshake, and plaintext fails it.
  TempDir stranger;
  keygen({"--dir", stranger.file("keys")});
  const CommandResult foreign = h2_worker(
      {"--keys-dir", stranger.file("keys"), "--coordinator-key-file", keys + "/coordinator.pub"});
  INFO(foreign.output);
  CHECK(foreign.exit_code == 1);
  CHECK_THAT(foreign.output, Catch::Contains("the coordinator refused our key"));
  const CommandResult plaintext = h2_worker({"--insecure-plaintext"});
  INFO(plaintext.output);
  CHECK(plaintext.exit_code == 1);
  CHECK_THAT(plaintext.output, Catch::Contains("handshake failed"));
  // Nobody but h1-0 joined.
  const json status = fleet.status();
  REQUIRE(status["workers"].size() == 1);
  CHECK(status["workers"][0]["id"] == "h1-0");
}
