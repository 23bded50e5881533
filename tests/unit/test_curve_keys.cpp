// The fleet's keys: key files, authorized_keys, the keys directory, and the ZAP handler's
// decision (docs/security.md).
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <zmq.h>
#include <catch2/catch.hpp>

#include "eep/common/authorized_keys.h"
#include "eep/common/client_keys.h"
#include "eep/common/curve_keys.h"
#include "eep/common/fleet_keys.h"
#include "eep/coordinator/zap_handler.h"
#include "scratch_dir.h"

namespace {

using namespace eep;
namespace fs = std::filesystem;

std::string fresh_dir(const std::string& name) {
  const fs::path dir = testing::process_scratch_dir("eep_curve_keys") / name;
  fs::remove_all(dir);
  return dir.string();
}

std::string binary_key(const std::string& z85) {
  std::string key(32, '\0');
  REQUIRE(zmq_z85_decode(reinterpret_cast<uint8_t*>(key.data()), z85.c_str()) != nullptr);
  return key;
}

unsigned mode_of(const std::string& path) {
  struct stat info {};
  REQUIRE(::stat(path.c_str(), &info) == 0);
  return info.st_mode & 0777;
}

}  // namespace

TEST_CASE("A key pair survives its files, and the secret file is private", "[keys]") {
  const std::string dir = fresh_dir("pair");
  fs::create_directories(dir);
  auto pair = make_curve_key_pair();
  REQUIRE(pair.is_ok());
  CHECK(is_z85_key(pair->public_key));
  CHECK(pair->public_key != pair->secret_key);
  REQUIRE(write_key_files(dir, "host-a", pair.value()).is_ok());
  CHECK(mode_of(dir + "/host-a.key") == 0600);
  auto read = read_key_pair_file(dir + "/host-a.key");
  REQUIRE(read.is_ok());
  CHECK(read->public_key == pair->public_key);
  CHECK(read->secret_key == pair->secret_key);
  auto public_only = read_public_key_file(dir + "/host-a.pub");
  REQUIRE(public_only.is_ok());
  CHECK(public_only.value() == pair->public_key);
  CHECK_FALSE(read_key_pair_file(dir + "/host-a.pub").is_ok());  // no secret in it

  // Never overwritten.
  auto other = make_curve_key_pair();
  CHECK(write_key_files(dir, "host-a", other.value()).code() == ErrorCode::kAlreadyExists);
  CHECK(read_key_pair_file(dir + "/host-a.key")->secret_key == pair->secret_key);

  // Readable by others: refused, with what to do.
  ::chmod((dir + "/host-a.key").c_str(), 0644);
  auto open = read_key_pair_file(dir + "/host-a.key");
  CHECK(open.status().code() == ErrorCode::kFailedPrecondition);
  CHECK_THAT(open.status().message(), Catch::Contains("chmod 600"));
}

TEST_CASE("A damaged key file is a clear error", "[keys]") {
  const std::string dir = fresh_dir("damaged");
  fs::create_directories(dir);
  const std::string path = dir + "/bad.key";
  for (const std::string& text : {std::string("public-key = \"short\"\nsecret-key = \"short\"\n"),
                                  std::string("public-key = unquoted\n"), std::string(""),
                                  std::string("public-key = \"") + std::string(40, '~') + "\"\n"}) {
    fs::remove(path);
    std::ofstream(path) << text;
    ::chmod(path.c_str(), 0600);
    auto read = read_key_pair_file(path);
    INFO(text);
    CHECK_FALSE(read.is_ok());
    CHECK_THAT(read.status().message(), Catch::Contains(path));
  }
  CHECK(read_key_pair_file(dir + "/missing.key").status().code() == ErrorCode::kIoError);
}

TEST_CASE("authorized_keys: roles, patterns and every bad line named", "[keys]") {
  auto a = make_curve_key_pair().value();
  auto b = make_curve_key_pair().value();
  const std::string text = "# comment\n\n  worker * " + a.public_key + " fleet key\n" +
                           "worker gpu-a-* " + b.public_key + "\nadmin ops " + a.public_key + "\n";
  auto keys = parse_authorized_keys(text);
  REQUIRE(keys.is_ok());
  REQUIRE(keys->size() == 3);
  CHECK(user_id_of((*keys)[0]) == "worker:*");
  CHECK(user_id_of((*keys)[1]) == "worker:gpu-a-*");
  CHECK(user_id_of((*keys)[2]) == "admin:ops");

  for (const std::string& bad : {"robot * " + a.public_key, "worker " + a.public_key,
                                 "worker w/0 " + a.public_key, std::string("worker * not-a-key"),
                                 "admin * " + a.public_key, "worker *a* " + a.public_key}) {
    auto parsed = parse_authorized_keys("# first\n" + bad + "\n");
    INFO(bad);
    CHECK(parsed.status().code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(parsed.status().message(), Catch::Contains("line 2"));
  }
}

TEST_CASE("A key speaks only for the worker ids its pattern names", "[keys]") {
  CHECK(may_speak_for("worker:*", "w0"));
  CHECK(may_speak_for("worker:gpu-a-*", "gpu-a-3"));
  CHECK_FALSE(may_speak_for("worker:gpu-a-*", "gpu-b-3"));
  CHECK(may_speak_for("worker:w3", "w3"));
  CHECK_FALSE(may_speak_for("worker:w3", "w30"));
  CHECK_FALSE(may_speak_for("worker:w3", "w"));
  CHECK_FALSE(may_speak_for("admin:ops", "w0"));  // an operator is not a worker
  CHECK_FALSE(may_speak_for("", "w0"));
  CHECK_FALSE(may_speak_for("worker", "w0"));
}

TEST_CASE("The ZAP decision admits a key only on its own socket", "[keys]") {
  auto worker = make_curve_key_pair().value();
  auto admin = make_curve_key_pair().value();
  auto stranger = make_curve_key_pair().value();
  const std::vector<AuthorizedKey> keys = {{KeyRole::kWorker, "gpu-a-*", worker.public_key},
                                           {KeyRole::kAdmin, "ops", admin.public_key}};
  using coordinator::zap_decide;
  auto admitted = zap_decide(keys, "control", "CURVE", binary_key(worker.public_key));
  CHECK(admitted.admitted);
  CHECK(admitted.user_id == "worker:gpu-a-*");
  CHECK(zap_decide(keys, "admin", "CURVE", binary_key(admin.public_key)).user_id == "admin:ops");
  // The right key on the wrong socket, unknown keys, other mechanisms, malformed keys.
  CHECK_FALSE(zap_decide(keys, "admin", "CURVE", binary_key(worker.public_key)).admitted);
  CHECK_FALSE(zap_decide(keys, "control", "CURVE", binary_key(admin.public_key)).admitted);
  CHECK_FALSE(zap_decide(keys, "control", "CURVE", binary_key(stranger.public_key)).admitted);
  CHECK_FALSE(zap_decide(keys, "control", "NULL", "").admitted);
  CHECK_FALSE(zap_decide(keys, "control", "PLAIN", binary_key(worker.public_key)).admitted);
  CHECK_FALSE(zap_decide(keys, "control", "CURVE", "short").admitted);
  CHECK_FALSE(zap_decide(keys, "other", "CURVE", binary_key(worker.public_key)).admitted);
}

TEST_CASE("A keys directory is made once, whole, by whoever comes first", "[keys]") {
  const std::string dir = fresh_dir("fleet") + "/keys";
  // Eight processes' worth of starts at once agree on one set.
  std::vector<std::thread> starts;
  std::atomic<int> made{0}, failed{0};
  for (int i = 0; i < 8; ++i) {
    starts.emplace_back([&] {
      auto result = ensure_fleet_keys(dir);
      if (!result.is_ok()) ++failed;
      if (result.is_ok() && result.value()) ++made;
    });
  }
  for (auto& thread : starts) thread.join();
  CHECK(failed == 0);
  CHECK(made == 1);
  CHECK(mode_of(dir) == 0700);
  for (const char* name : {"coordinator", "worker", "admin"}) {
    INFO(name);
    CHECK(read_key_pair_file(key_pair_path(dir, name)).is_ok());
  }
  auto keys = read_authorized_keys(authorized_keys_path(dir));
  REQUIRE(keys.is_ok());
  REQUIRE(keys->size() == 2);
  CHECK(user_id_of((*keys)[0]) == "worker:*");
  CHECK((*keys)[0].public_key == read_public_key_file(dir + "/worker.pub").value());
  CHECK(user_id_of((*keys)[1]) == "admin:admin");
  // Nothing staged is left beside it.
  int entries = 0;
  for (const auto& entry : fs::directory_iterator(fs::path(dir).parent_path())) {
    (void)entry;
    ++entries;
  }
  CHECK(entries == 1);

  const std::string before = read_key_pair_file(key_pair_path(dir, "worker"))->secret_key;
  CHECK_FALSE(ensure_fleet_keys(dir).value());
  CHECK(read_key_pair_file(key_pair_path(dir, "worker"))->secret_key == before);

  // More keys: per host, per operator; names and patterns checked.
  REQUIRE(add_fleet_key(dir, "gpu-a", KeyRole::kWorker, "gpu-a-*").is_ok());
  REQUIRE(add_fleet_key(dir, "alice", KeyRole::kAdmin, "alice").is_ok());
  CHECK(add_fleet_key(dir, "gpu-a", KeyRole::kWorker, "gpu-a-*").code() ==
        ErrorCode::kAlreadyExists);
  CHECK(add_fleet_key(dir, "bad/name", KeyRole::kWorker, "*").code() ==
        ErrorCode::kInvalidArgument);
  CHECK(add_fleet_key(dir, "gpu-b", KeyRole::kWorker, "a*b").code() == ErrorCode::kInvalidArgument);
  keys = read_authorized_keys(authorized_keys_path(dir));
  REQUIRE(keys->size() == 4);
  CHECK(user_id_of((*keys)[2]) == "worker:gpu-a-*");
  CHECK((*keys)[2].public_key == read_public_key_file(dir + "/gpu-a.pub").value());
}

TEST_CASE("A directory of other files is never filled with keys", "[keys]") {
  const std::string dir = fresh_dir("occupied");
  fs::create_directories(dir);
  std::ofstream(dir + "/notes.txt") << "mine\n";
  auto result = ensure_fleet_keys(dir);
  CHECK(result.status().code() == ErrorCode::kFailedPrecondition);
  CHECK_THAT(result.status().message(), Catch::Contains("eep-keygen"));
  CHECK_FALSE(fs::exists(dir + "/coordinator.key"));
}

TEST_CASE("A client's keys come from the keys directory unless named", "[keys]") {
  const std::string dir = fresh_dir("client") + "/keys";
  REQUIRE(ensure_fleet_keys(dir).is_ok());
  ClientKeyOptions options;
  options.keys_dir = dir;
  auto worker = load_client_keys(options, "worker");
  REQUIRE(worker.is_ok());
  REQUIRE(worker->has_value());
  CHECK((*worker)->own.public_key == read_public_key_file(dir + "/worker.pub").value());
  CHECK((*worker)->server_public_key == read_public_key_file(dir + "/coordinator.pub").value());
  auto admin = load_client_keys(options, "admin");
  CHECK((*admin)->own.public_key == read_public_key_file(dir + "/admin.pub").value());

  options.insecure_plaintext = true;
  CHECK_FALSE(load_client_keys(options, "worker").value().has_value());

  ClientKeyOptions missing;
  missing.keys_dir = dir + "-nowhere";
  auto none = load_client_keys(missing, "worker");
  CHECK_FALSE(none.is_ok());
  CHECK_THAT(none.status().message(), Catch::Contains("--insecure-plaintext"));
}
