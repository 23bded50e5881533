// The fleet's membership under operators and failures, with real processes on loopback:
// coordinator + local workers, eepctl, SIGKILL / SIGSTOP, bad admin input, refused workers,
// admin tokens, and the systemd launcher against a fake systemctl.
#include <zmq.hpp>

#include "eep/common/admin_client.h"
#include "eep/common/protocol.h"
#include "eep/common/zmq_util.h"
#include "fleet.h"

using namespace eep;
using namespace eep::testing;

namespace {

pid_t pid_of(const json& worker) {
  return worker["pid"].get<pid_t>();
}

json find_worker(Fleet& fleet, const std::string& id) {
  const json status = fleet.status();  // kept alive for the loop
  for (const json& worker : status["workers"]) {
    if (worker["id"] == id) return worker;
  }
  return json();
}

}  // namespace

TEST_CASE("coordinator with 2 local workers: two ACTIVE ranks 0 and 1", "[fleet]") {
  Fleet fleet({"--dp", "2"});
  REQUIRE(eventually([&] { return fleet.has_active(2); }, 10s));
  json status = fleet.status();
  CHECK(status["ok"] == true);
  CHECK(status["generation"] == 1);
  CHECK(status["active_dp"] == 2);
  auto active = fleet.workers_in("ACTIVE");
  REQUIRE(active.size() == 2);
  CHECK(active[0]["rank"] == 0);
  CHECK(active[1]["rank"] == 1);
  for (const json& worker : active) {
    CHECK(worker["generation"] == 1);
    CHECK(process_alive(pid_of(worker)));
    CHECK(worker.contains("host"));
    CHECK(worker.contains("id"));
  }
  // The readable table names the workers too.
  CommandResult table = fleet.eepctl({"status"});
  CHECK(table.exit_code == 0);
  CHECK_THAT(table.output, Catch::Contains("ACTIVE"));
  CHECK_THAT(table.output, Catch::Contains(active[0]["id"].get<std::string>()));
}

TEST_CASE("scale 2 -> 4 -> 2: ranks in order, retired processes exit", "[fleet]") {
  Fleet fleet({"--dp", "2"});
  REQUIRE(eventually([&] { return fleet.has_active(2); }, 30s));
  // How long each scale took is a figure (printed), not a bound: a loaded machine is slower.
  auto seconds_since = [](std::chrono::steady_clock::time_point since) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
  };

  auto started = std::chrono::steady_clock::now();
  CommandResult up = fleet.eepctl({"scale", "--dp", "4"});
  INFO(up.output);
  REQUIRE(up.exit_code == 0);
  CHECK_THAT(up.output, Catch::Contains("scaled 2 -> 4"));
  REQUIRE(eventually([&] { return fleet.has_active(4); }, 30s));
  std::printf("scale 2 -> 4 (no model): %.2f s\n", seconds_since(started));
  auto four = fleet.workers_in("ACTIVE");
  for (size_t rank = 0; rank < four.size(); ++rank) CHECK(four[rank]["rank"] == rank);

  started = std::chrono::steady_clock::now();
  CommandResult down = fleet.eepctl({"scale", "--dp", "2"});
  INFO(down.output);
  REQUIRE(down.exit_code == 0);
  REQUIRE(eventually([&] { return fleet.has_active(2); }, 30s));
  std::printf("scale 4 -> 2 (no model): %.2f s\n", seconds_since(started));
  // The highest ranks left, and their processes are gone.
  for (size_t rank = 2; rank < 4; ++rank) {
    CHECK(eventually([&] { return !process_alive(pid_of(four[rank])); }, 5s));
    CHECK(find_worker(fleet, four[rank]["id"]).is_null());
  }
  auto two = fleet.workers_in("ACTIVE");
  CHECK(two[0]["id"] == four[0]["id"]);
  CHECK(two[1]["id"] == four[1]["id"]);
  CHECK(fleet.status()["generation"] == 3);

  // Scaling to the current size is a no-op that says so.
  CommandResult same = fleet.eepctl({"scale", "--dp", "2"});
  CHECK(same.exit_code == 0);
  CHECK_THAT(same.output, Catch::Contains("already at dp 2"));
}

TEST_CASE("a killed worker is lost at once and a stopped one after the heartbeat timeout",
          "[fleet]") {
  Fleet fleet({"--dp", "3", "--heartbeat-timeout-ms", "1000"});
  REQUIRE(eventually([&] { return fleet.has_active(3); }, 10s));
  auto active = fleet.workers_in("ACTIVE");
  auto health = [&] { return fleet.status()["health"]; };

  const auto killed_at = std::chrono::steady_clock::now();
  REQUIRE(::kill(pid_of(active[1]), SIGKILL) == 0);
  REQUIRE(eventually([&] { return health()["num_failures"] == 1; }, 10s));
  std::printf("kill -9 seen after %.3f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count());
  // Seen through the process's exit (the pidfd), not its silence.
  const std::string killed = health()["last_failure"];
  CHECK_THAT(killed, Catch::Contains("signal 9"));
  CHECK_THAT(killed, Catch::Contains(active[1]["id"].get<std::string>()));
  // The fleet recovers and returns to its size (the slot relaunched); the coordinator answers.
  REQUIRE(eventually([&] { return fleet.has_active(3) && health()["num_recoveries"] == 1; }, 10s));
  CHECK(fleet.status()["ok"] == true);

  const auto stopped_at = std::chrono::steady_clock::now();
  REQUIRE(::kill(pid_of(active[2]), SIGSTOP) == 0);
  std::this_thread::sleep_for(500ms);
  CHECK(health()["num_failures"] == 1);  // not before the timeout
  REQUIRE(eventually([&] { return health()["num_failures"] == 2; }, 3s));
  // Silence counts from the last heartbeat, which came up to one interval (timeout / 3) before
  // the stop.
  CHECK(std::chrono::steady_clock::now() - stopped_at >= 1000ms - 1000ms / 3);
  CHECK_THAT(health()["last_failure"].get<std::string>(), Catch::Contains("heartbeat"));
  // The hung process is killed so that it releases its device.
  CHECK(eventually([&] { return !process_alive(pid_of(active[2])); }, 5s));
  CHECK(find_worker(fleet, active[0]["id"])["state"] == "ACTIVE");
  REQUIRE(eventually([&] { return fleet.has_active(3) && health()["num_recoveries"] == 2; }, 10s));
}

TEST_CASE("bad admin input gets an error reply and the next good request is served", "[fleet]") {
  Fleet fleet({"--dp", "1", "--max-workers", "6", "--port-range", "29300-29302"});
  REQUIRE(eventually([&] { return fleet.has_active(1); }, 10s));
  AdminClient client(admin_connection(fleet.admin()));

  struct Case {
    std::string request;
    std::string code;
  };
  const std::vector<Case> cases = {
      {"this is not json", "invalid_argument"},
      {"{\"cmd\": \"frobnicate\"}", "invalid_argument"},
      {"{\"cmd\": \"scale\", \"dp\": \"4\"}", "invalid_argument"},
      {"{\"cmd\": \"scale\", \"dp\": 2.5}", "invalid_argument"},
      {"{\"cmd\": \"scale\"}", "invalid_argument"},
      {"{\"cmd\": 12}", "invalid_argument"},
      {"[\"scale\"]", "invalid_argument"},
      {"{\"cmd\": \"scale\", \"dp\": 0}", "invalid_argument"},
      {"{\"cmd\": \"scale\", \"dp\": -3}", "invalid_argument"},
      {"{\"cmd\": \"scale\", \"dp\": 1000}", "resource_exhausted"},  // above --max-workers
      {"{\"cmd\": \"scale\", \"dp\": 2}", "resource_exhausted"},     // 1 of 3 ports left
      {"{\"cmd\": \"status\", \"v\": 99}", "version_mismatch"},
  };
  for (const Case& c : cases) {
    INFO(c.request);
    auto reply = client.call_raw(c.request, 5s);
    REQUIRE(reply.is_ok());
    json parsed = json::parse(reply.value());
    CHECK(parsed["ok"] == false);
    CHECK(parsed["error"]["code"] == c.code);
    CHECK_FALSE(parsed["error"]["message"].get<std::string>().empty());
    // The next good request is served.
    auto good = client.call_raw("{\"cmd\": \"status\"}", 5s);
    REQUIRE(good.is_ok());
    CHECK(json::parse(good.value())["ok"] == true);
  }
  CHECK(fleet.has_active(1));
  CHECK(fleet.coordinator().running());
}

TEST_CASE("a second scale while one runs is refused and the first completes", "[fleet]") {
  // Every launched worker takes 1.5 s to register, so a scale stays running that long.
  Fleet slow({"--dp", "1", "--worker-arg=--test-register-delay-ms=1500"});
  REQUIRE(eventually([&] { return slow.has_active(1); }, 10s));
  AdminClient slow_client(admin_connection(slow.admin()));
  auto first = slow_client.call_raw("{\"cmd\": \"scale\", \"dp\": 2}", 5s);
  REQUIRE(first.is_ok());
  CHECK(json::parse(first.value())["ok"] == true);
  auto second = slow_client.call_raw("{\"cmd\": \"scale\", \"dp\": 3}", 5s);
  REQUIRE(second.is_ok());
  json refused = json::parse(second.value());
  CHECK(refused["ok"] == false);
  CHECK(refused["error"]["code"] == "failed_precondition");
  CHECK_THAT(refused["error"]["message"].get<std::string>(), Catch::Contains("already running"));
  REQUIRE(eventually([&] { return slow.has_active(2); }, 10s));
  CHECK(slow.status()["scale"]["state"] == "succeeded");
}

TEST_CASE("workers with the wrong protocol version or fleet token are refused", "[fleet]") {
  TempDir secrets;
  write_file(secrets.file("fleet.token"), "right-token\n", 0600);
  write_file(secrets.file("wrong.token"), "wrong-token\n", 0600);
  Fleet fleet({"--dp", "0", "--fleet-token-file", secrets.file("fleet.token")});

  // A hand-made worker speaking protocol version 99.
  zmq::context_t context;
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  set_curve_client(socket, test_client_keys("worker"));
  socket.set(zmq::sockopt::routing_id, "old-worker");
  socket.set(zmq::sockopt::linger, 0);
  socket.connect(fleet.control());
  protocol::Register reg{"old-worker", "localhost", 1, "cpu", 0, "right-token"};
  protocol::Envelope envelope = protocol::make_envelope(reg, 1, -1, "old-worker");
  envelope.v = 99;
  send_envelope(socket, std::nullopt, envelope);
  auto frames = recv_frames(socket, 5s);
  REQUIRE(frames);
  auto reply_envelope =
      protocol::decode((*frames)[0].to_string_view(), (*frames)[1].to_string_view());
  REQUIRE(reply_envelope.is_ok());
  auto reply = protocol::parse_body<protocol::RegisterReply>(reply_envelope.value());
  REQUIRE(reply.is_ok());
  CHECK_FALSE(reply->ok);
  REQUIRE(reply->error);
  CHECK(reply->error->code == "version_mismatch");
  CHECK(eventually(
      [&] {
        auto log = fleet.coordinator_log();
        return log.find("refused registration of 'old-worker'") != std::string::npos &&
               log.find("protocol version 99") != std::string::npos;
      },
      2s));

  // The real worker with a wrong token exits with the reason; with the right one it joins.
  CommandResult wrong =
      run_command({bin("eep-worker"), "--coordinator", fleet.control(), "--worker-id", "intruder",
                   "--fleet-token-file", secrets.file("wrong.token")},
                  10s);
  CHECK(wrong.exit_code == 1);
  CHECK_THAT(wrong.output, Catch::Contains("wrong fleet token"));
  CHECK_THAT(fleet.coordinator_log(), Catch::Contains("refused registration of 'intruder'"));
  CommandResult none = run_command(
      {bin("eep-worker"), "--coordinator", fleet.control(), "--worker-id", "tokenless"}, 10s);
  CHECK(none.exit_code == 1);
  CHECK_THAT(none.output, Catch::Contains("needs a token"));
  // An id the coordinator would refuse is refused by the worker itself, before it connects.
  CommandResult bad_id = run_command({bin("eep-worker"), "--coordinator", fleet.control(),
                                      "--worker-id", "w 0\n[coord] forged line"},
                                     10s);
  CHECK(bad_id.exit_code == 1);
  CHECK_THAT(bad_id.output, Catch::Contains("--worker-id 'w 0\\x0a[coord] forged line'"));

  auto good =
      ChildProcess::spawn({bin("eep-worker"), "--coordinator", fleet.control(), "--worker-id",
                           "friend", "--fleet-token-file", secrets.file("fleet.token")},
                          SpawnOptions{{}, secrets.file("friend.log"), true});
  REQUIRE(good.is_ok());
  CHECK(eventually([&] { return find_worker(fleet, "friend")["state"] == "SPARE"; }, 5s));
  CHECK(fleet.workers_in("SPARE").size() == 1);
}

TEST_CASE(
    "plaintext sockets off loopback are refused, and an admin token is asked of every "
    "request",
    "[fleet]") {
  for (const char* socket : {"--admin", "--control"}) {
    Fleet refused({socket, "tcp://0.0.0.0:*", "--dp", "0", "--insecure-plaintext"}, {},
                  /*expect_ready=*/false);
    REQUIRE(refused.coordinator().wait_for(10s));
    CHECK(refused.coordinator().describe_exit() == "exited with 2");
    CHECK_THAT(refused.coordinator_log(),
               Catch::Contains("refusing --insecure-plaintext with a socket on tcp://0.0.0.0"));
  }
  TempDir secrets;
  write_file(secrets.file("admin.token"), "s3cret\n", 0600);
  Fleet fleet({"--admin", "tcp://0.0.0.0:*", "--dp", "0", "--admin-token-file",
               secrets.file("admin.token")});
  const std::string port = fleet.admin().substr(fleet.admin().rfind(':') + 1);
  const std::string admin = "tcp://127.0.0.1:" + port;
  CommandResult without = run_command({bin("eepctl"), "--admin", admin, "status"}, 10s);
  CHECK(without.exit_code == 1);
  CHECK_THAT(without.output, Catch::Contains("unauthenticated"));
  write_file(secrets.file("bad.token"), "guess\n", 0600);
  CommandResult wrong = run_command(
      {bin("eepctl"), "--admin", admin, "--token-file", secrets.file("bad.token"), "status"}, 10s);
  CHECK(wrong.exit_code == 1);
  CHECK_THAT(wrong.output, Catch::Contains("unauthenticated"));
  CommandResult with = run_command({bin("eepctl"), "--admin", admin, "--token-file",
                                    secrets.file("admin.token"), "status", "--json"},
                                   10s);
  INFO(with.output);
  CHECK(with.exit_code == 0);
  CHECK(json::parse(with.output)["ok"] == true);
  // Shut it down with the token (the fixture's own shutdown has none).
  run_command(
      {bin("eepctl"), "--admin", admin, "--token-file", secrets.file("admin.token"), "shutdown"},
      10s);
  CHECK(fleet.coordinator().wait_for(10s));
}

TEST_CASE("the systemd launcher runs systemctl start/stop eep-worker@N", "[fleet]") {
  TempDir fake;
  const std::string control = "tcp://127.0.0.1:" + std::to_string(free_port());
  // A fake systemctl: records its arguments and plays systemd's part with eep-worker.
  write_file(fake.file("systemctl"), R"SH(#!/bin/sh
echo "$@" >> "$FAKE_DIR/systemctl.log"
case "$1" in
  start)
    n=${2##*@}
    nohup "$EEP_WORKER_BIN" --coordinator "$FAKE_CONTROL" --worker-id "w$n" --device-idx "$n" \
      > "$FAKE_DIR/w$n.log" 2>&1 &
    echo $! > "$FAKE_DIR/w$n.pid" ;;
  stop) n=${2##*@}; kill "$(cat "$FAKE_DIR/w$n.pid")" ;;
  kill) n=${3##*@}; kill -9 "$(cat "$FAKE_DIR/w$n.pid")" ;;
  *) echo "fake systemctl: unknown verb $1" >&2; exit 1 ;;
esac
)SH",
             0755);
  std::map<std::string, std::string> env = {
      {"PATH", fake.path() + ":" + std::string(std::getenv("PATH"))},
      {"FAKE_DIR", fake.path()},
      {"FAKE_CONTROL", control},
      {"EEP_WORKER_BIN", bin("eep-worker")}};
  Fleet fleet({"--launcher", "systemd", "--dp", "2", "--control", control}, env);
  REQUIRE(eventually([&] { return fleet.has_active(2); }, 10s));
  std::string log = read_file(fake.file("systemctl.log"));
  CHECK_THAT(log, Catch::Contains("start eep-worker@0"));
  CHECK_THAT(log, Catch::Contains("start eep-worker@1"));
  auto active = fleet.workers_in("ACTIVE");
  CHECK(active[0]["id"] == "w0");
  CHECK(active[1]["id"] == "w1");

  CommandResult down = fleet.eepctl({"scale", "--dp", "1"});
  INFO(down.output);
  CHECK(down.exit_code == 0);
  REQUIRE(eventually([&] { return fleet.has_active(1); }, 5s));
  CHECK(eventually(
      [&] {
        return read_file(fake.file("systemctl.log")).find("stop eep-worker@1") != std::string::npos;
      },
      5s));
  CHECK(eventually([&] { return !process_alive(pid_of(active[1])); }, 5s));
  CHECK(fleet.status()["launcher"] == "systemd");
}
