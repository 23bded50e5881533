// The authenticated control plane (docs/security.md): CURVE on the control and admin sockets, a
// ZAP handler that admits the keys of authorized_keys, and each control message bound to the
// worker ids its connection's key may speak for. Real processes, real keys, loopback.
#include <sys/stat.h>

#include "eep/common/zmq_util.h"
#include "fleet.h"

using namespace eep;
using namespace eep::testing;

namespace {

// `eep-keygen ARGS`; its output on failure.
void keygen(std::vector<std::string> args) {
  args.insert(args.begin(), bin("eep-keygen"));
  const CommandResult result = run_command(args, 10s);
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
}

CurveClientKeys keys_of(const std::string& key_file, const std::string& coordinator_pub) {
  ClientKeyOptions options;
  options.key_file = key_file;
  options.coordinator_key_file = coordinator_pub;
  auto keys = load_client_keys(options, "worker");
  INFO(keys.status().to_string());
  REQUIRE(keys.is_ok());
  return keys.value().value();
}

// A DEALER on the control socket: with `keys` (CURVE) or without (plaintext), under `id`.
class Peer {
 public:
  Peer(zmq::context_t& context, const std::string& endpoint, const std::string& id,
       const std::optional<CurveClientKeys>& keys)
      : socket_(context, zmq::socket_type::dealer) {
    if (keys) set_curve_client(socket_, *keys);
    socket_.set(zmq::sockopt::routing_id, id);
    socket_.set(zmq::sockopt::linger, 200);
    socket_.connect(endpoint);
  }
  void send(const std::string& type, const nlohmann::json& body) {
    const json envelope = {{"v", 1},          {"type", type},  {"seq", 1},
                           {"generation", 0}, {"sender", "x"}, {"body", body}};
    socket_.send(zmq::buffer(type), zmq::send_flags::sndmore);
    socket_.send(zmq::buffer(envelope.dump()), zmq::send_flags::none);
  }
  // Whether anything at all arrives within `timeout`.
  bool receives_anything(std::chrono::milliseconds timeout) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    return zmq::poll(&item, 1, timeout) > 0;
  }

 private:
  zmq::socket_t socket_;
};

json register_body(const std::string& id) {
  return {
      {"worker_id", id}, {"host", "127.0.0.1"}, {"pid", 1}, {"device", "cpu"}, {"device_idx", 0}};
}

bool completes(const TempDir& dir, Fleet& fleet) {
  std::string body;
  const int code =
      curl_status(dir, "POST", fleet.base_url() + "/v1/completions",
                  R"({"model":"tiny","prompt":[1,2,3],"max_tokens":3,"temperature":0})", &body);
  INFO(body);
  return code == 200 && json::parse(body)["usage"]["completion_tokens"] == 3;
}

}  // namespace

TEST_CASE("without a valid key nobody reaches the control or admin socket, nor any request",
          "[security]") {
  TempDir dir;
  const std::string keys = dir.file("keys");
  const std::string stranger = dir.file("stranger");
  keygen({"--dir", keys});
  keygen({"--dir", stranger});
  const std::string model = make_tiny_model(dir, 7);
  Fleet fleet({"--keys-dir", keys, "--dp", "1", "--model", model, "--worker-arg=--kv-blocks=64"});
  REQUIRE(eventually([&] { return fleet.has_active(1); }, 30s));

  auto eepctl_status = [&](std::vector<std::string> flags) {
    std::vector<std::string> argv = {bin("eepctl"), "--admin", fleet.admin(), "--timeout-ms",
                                     "1500"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    argv.push_back("status");
    return run_command(argv, 10s);
  };
  // Our own keys: served.
  CommandResult ok = eepctl_status({"--keys-dir", keys});
  INFO(ok.output);
  CHECK(ok.exit_code == 0);
  // A key that authorized_keys does not name: refused at the handshake, and told so.
  CommandResult unknown =
      eepctl_status({"--keys-dir", stranger, "--coordinator-key-file", keys + "/coordinator.pub"});
  CHECK(unknown.exit_code == 1);
  CHECK_THAT(unknown.output, Catch::Contains("the coordinator refused our key"));
  // The fleet's worker key is not an operator's.
  CommandResult worker_key =
      eepctl_status({"--keys-dir", keys, "--key-file", keys + "/worker.key"});
  CHECK(worker_key.exit_code == 1);
  CHECK_THAT(worker_key.output, Catch::Contains("the coordinator refused our key"));
  // No CURVE at all, or another coordinator's public key: no connection.
  CommandResult plaintext = eepctl_status({"--insecure-plaintext"});
  CHECK(plaintext.exit_code == 1);
  CHECK_THAT(plaintext.output, Catch::Contains("handshake failed"));
  CommandResult wrong_server =
      eepctl_status({"--keys-dir", keys, "--coordinator-key-file", stranger + "/coordinator.pub"});
  CHECK(wrong_server.exit_code == 1);
  CHECK_THAT(wrong_server.output, Catch::Contains("no answer"));

  // A worker with a stranger's key never registers and says why.
  CommandResult worker =
      run_command({bin("eep-worker"), "--coordinator", fleet.control(), "--worker-id", "intruder",
                   "--keys-dir", stranger, "--coordinator-key-file", keys + "/coordinator.pub",
                   "--register-timeout-ms", "1500"},
                  10s);
  CHECK(worker.exit_code == 1);
  CHECK_THAT(worker.output, Catch::Contains("the coordinator refused our key"));

  // Unauthenticated peers, one without CURVE and one with an unknown key, register and forge
  // an exit for w0, and listen while the fleet serves: nothing reaches them, nothing changes.
  zmq::context_t context;
  Peer plain(context, fleet.control(), "w0", std::nullopt);
  Peer unknown_key(context, fleet.control(), "w1",
                   keys_of(stranger + "/worker.key", keys + "/coordinator.pub"));
  for (Peer* peer : {&plain, &unknown_key}) {
    peer->send("register", register_body("w1"));
    peer->send("worker_exiting", {{"reason", "forged"}});
  }
  for (int i = 0; i < 3; ++i) CHECK(completes(dir, fleet));
  CHECK_FALSE(plain.receives_anything(300ms));
  CHECK_FALSE(unknown_key.receives_anything(300ms));
  const json status = fleet.status();
  REQUIRE(status["workers"].size() == 1);
  CHECK(status["workers"][0]["id"] == "w0");
  CHECK(status["workers"][0]["state"] == "ACTIVE");
  CHECK(eventually(
      [&] {
        return fleet.coordinator_log().find(
                   "connection(s) refused: their key is not in "
                   "authorized_keys") != std::string::npos;
      },
      3s));
}

TEST_CASE(
    "a worker key speaks only for the ids it names, and forged lifecycle messages change "
    "nothing",
    "[security]") {
  TempDir dir;
  const std::string keys = dir.file("keys");
  keygen({"--dir", keys});
  keygen({"--dir", keys, "--worker", "host-b", "--ids", "b-*"});
  const std::string model = make_tiny_model(dir, 8);
  Fleet fleet({"--keys-dir", keys, "--dp", "1", "--model", model, "--worker-arg=--kv-blocks=64"});
  REQUIRE(eventually([&] { return fleet.has_active(1); }, 30s));
  const std::string host_b_key = keys + "/host-b.key";

  // Host b's key registers host b's workers...
  auto b1 = ChildProcess::spawn({bin("eep-worker"), "--coordinator", fleet.control(), "--worker-id",
                                 "b-1", "--keys-dir", keys, "--key-file", host_b_key, "--host",
                                 "127.0.0.1", "--model", model, "--kv-blocks", "64"},
                                SpawnOptions{{}, dir.file("b-1.log"), true});
  REQUIRE(b1.is_ok());
  CHECK(eventually(
      [&] {
        for (const json& w : fleet.workers_in("SPARE")) {
          if (w["id"] == "b-1") return true;
        }
        return false;
      },
      10s));
  // ...and no other: a worker of host b that calls itself w7 is never heard.
  CommandResult other =
      run_command({bin("eep-worker"), "--coordinator", fleet.control(), "--worker-id", "w7",
                   "--keys-dir", keys, "--key-file", host_b_key, "--register-timeout-ms", "1500"},
                  10s);
  CHECK(other.exit_code == 1);
  CHECK_THAT(other.output, Catch::Contains("no answer from the coordinator"));
  CHECK_THAT(fleet.coordinator_log(),
             Catch::Contains("dropped a control message sent as 'w7' by a connection whose key "
                             "speaks for 'worker:b-*'"));

  // Host b's key forging the lifecycle of others: an exit and a register for the live w0 (ZeroMQ
  // refuses a second connection under w0's id), an exit for w0's heartbeat identity, a
  // register under a free id it does not own.
  zmq::context_t context;
  const CurveClientKeys b_keys = keys_of(host_b_key, keys + "/coordinator.pub");
  Peer as_w0(context, fleet.control(), "w0", b_keys);
  as_w0.send("worker_exiting", {{"reason", "forged"}});
  as_w0.send("register", register_body("w0"));
  Peer as_w0_beat(context, fleet.control(), "w0/hb-forged", b_keys);
  as_w0_beat.send("worker_exiting", {{"reason", "forged"}});
  Peer as_free(context, fleet.control(), "w5", b_keys);
  as_free.send("register", register_body("w5"));
  CHECK(completes(dir, fleet));
  CHECK_FALSE(as_w0.receives_anything(300ms));
  CHECK_FALSE(as_free.receives_anything(300ms));
  const json status = fleet.status();
  CHECK(status["workers"].size() == 2);  // w0 and b-1, nobody else
  CHECK(fleet.workers_in("ACTIVE").size() == 1);
  CHECK(fleet.workers_in("ACTIVE")[0]["id"] == "w0");
  CHECK_THAT(fleet.coordinator_log(), Catch::Contains("sent as 'w5'"));
  // The fleet still scales onto host b's worker.
  CommandResult up = fleet.eepctl({"scale", "--dp", "2"});
  INFO(up.output);
  CHECK(up.exit_code == 0);
  CHECK(completes(dir, fleet));
}

TEST_CASE("keys are made at the first start, private, and SIGHUP admits a key added later",
          "[security]") {
  TempDir dir;
  const std::string keys = dir.file("state/keys");  // neither exists yet
  Fleet fleet({"--keys-dir", keys, "--dp", "0"});
  struct stat info {};
  REQUIRE(::stat(keys.c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == 0700);
  for (const char* name : {"coordinator.key", "worker.key", "admin.key"}) {
    REQUIRE(::stat((keys + "/" + name).c_str(), &info) == 0);
    CHECK((info.st_mode & 0777) == 0600);
  }
  CHECK_THAT(fleet.coordinator_log(), Catch::Contains("made the fleet's keys in " + keys));
  CHECK(fleet.eepctl({"status"}).exit_code == 0);

  keygen({"--dir", keys, "--admin", "alice"});
  auto as_alice = [&] {
    return fleet.eepctl({"--key-file", keys + "/alice.key", "--timeout-ms", "1000", "status"});
  };
  CommandResult before = as_alice();
  CHECK(before.exit_code == 1);
  CHECK_THAT(before.output, Catch::Contains("refused our key"));
  fleet.coordinator().signal(SIGHUP);
  CHECK(eventually([&] { return as_alice().exit_code == 0; }, 5s));
  CHECK_THAT(fleet.coordinator_log(), Catch::Contains("SIGHUP: 3 authorized keys read"));
  CHECK(fleet.coordinator().running());
}

TEST_CASE(
    "with --insecure-plaintext on loopback a fleet serves and scales, and CURVE clients "
    "are told",
    "[security]") {
  TempDir dir;
  const std::string model = make_tiny_model(dir, 9);
  Fleet fleet(
      {"--insecure-plaintext", "--dp", "1", "--model", model, "--worker-arg=--kv-blocks=64"});
  REQUIRE(eventually([&] { return fleet.has_active(1); }, 30s));
  CHECK(completes(dir, fleet));
  CommandResult up = fleet.eepctl({"scale", "--dp", "2"});
  INFO(up.output);
  CHECK(up.exit_code == 0);
  CHECK(completes(dir, fleet));
  CommandResult curve =
      run_command({bin("eepctl"), "--admin", fleet.admin(), "--timeout-ms", "1500", "status"}, 10s);
  CHECK(curve.exit_code == 1);
  CHECK_THAT(curve.output, Catch::Contains("handshake failed"));
  CHECK_THAT(fleet.coordinator_log(), Catch::Contains("--insecure-plaintext"));
}
