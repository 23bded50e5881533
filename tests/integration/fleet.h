// Test fixture: a real eep-coordinator process (and the workers it launches) on loopback, with
// helpers to run eepctl and read its output. Teardown terminates, then kills.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <sys/stat.h>
#include <algorithm>
#include <atomic>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "eep/common/admin_client.h"
#include "eep/common/client_keys.h"
#include "eep/common/subprocess.h"

namespace eep::testing {

using nlohmann::json;
using namespace std::chrono_literals;

// The build's binaries; $EEP_BIN_DIR overrides the path compiled in (binaries built on one
// machine and run on another, as scripts/gpu/test.sh does).
inline std::string bin(const std::string& name) {
  const char* dir = std::getenv("EEP_BIN_DIR");
  return std::string(dir != nullptr ? dir : EEP_BIN_DIR) + "/" + name;
}

// A fresh directory under the system temp dir, removed at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "eep-test-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

inline void write_file(const std::string& path, const std::string& content, int mode = 0644) {
  std::ofstream(path) << content;
  ::chmod(path.c_str(), mode);
}

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Runs a command to completion (at most timeout) and returns its exit code and output.
inline CommandResult run_command(const std::vector<std::string>& argv,
                                 std::chrono::milliseconds timeout = 30s,
                                 std::map<std::string, std::string> env = {}) {
  TempDir dir;
  SpawnOptions options;
  options.log_path = dir.file("out.log");
  options.env = std::move(env);
  auto child = ChildProcess::spawn(argv, options);
  REQUIRE(child.is_ok());
  if (!child->wait_for(timeout)) child->stop(1000ms);
  CommandResult result;
  const int status = child->wait_status().value_or(-1);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.output = read_file(dir.file("out.log"));
  return result;
}

// curl's HTTP status code for one request to `url` (-1 when curl failed), the body in *out.
inline int curl_status(const TempDir& dir, const std::string& method, const std::string& url,
                       const std::string& body = "", std::string* out = nullptr) {
  std::vector<std::string> argv = {"curl", "-s",   "-o", dir.file("curl.out"), "-w", "%{http_code}",
                                   "-X",   method, url};
  if (!body.empty()) {
    write_file(dir.file("curl.body"), body);
    argv.insert(argv.end(), {"-H", "Content-Type: application/json", "--data-binary",
                             "@" + dir.file("curl.body")});
  }
  CommandResult result = run_command(argv, 30s);
  if (out) *out = read_file(dir.file("curl.out"));
  return result.exit_code == 0 ? std::stoi(result.output) : -1;
}

// A generated model (eep-mkmodel --preset tiny, random weights) in dir/name; more eep-mkmodel
// flags in `extra`. Returns its directory.
inline std::string make_tiny_model(const TempDir& dir, int seed,
                                   const std::vector<std::string>& extra = {},
                                   const std::string& name = "tiny") {
  const std::string model = dir.file(name);
  std::vector<std::string> argv = {bin("eep-mkmodel"),   "--preset", "tiny", "--seed",
                                   std::to_string(seed), "--out",    model};
  argv.insert(argv.end(), extra.begin(), extra.end());
  CommandResult made = run_command(argv, 120s);
  INFO(made.output);
  REQUIRE(made.exit_code == 0);
  return model;
}

// Polls `condition` every 50 ms until it holds or `timeout` passes.
template <typename Condition>
bool eventually(Condition condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return condition();
}

// eep-bench's records (--save-tokens) keyed by request index: the output ids of each, checked
// successful.
inline std::map<int, nlohmann::json> outputs_by_request(const nlohmann::json& report) {
  std::map<int, nlohmann::json> outputs;
  for (const nlohmann::json& record : report["requests"]) {
    INFO(record.dump());
    REQUIRE(record["success"] == true);
    outputs[record["id"].get<int>()] = record["output_ids"];
  }
  return outputs;
}

// Runs an eep-bench command (`argv`, with --save-tokens --result-json `results`) as the reference
// of a test: every request must succeed; returns their outputs (outputs_by_request).
inline std::map<int, nlohmann::json> reference_outputs(const std::vector<std::string>& argv,
                                                       const std::string& results,
                                                       std::chrono::milliseconds timeout) {
  const CommandResult reference = run_command(argv, timeout);
  INFO(reference.output);
  REQUIRE(reference.exit_code == 0);
  const nlohmann::json report = nlohmann::json::parse(read_file(results));
  REQUIRE(report["summary"]["failed"] == 0);
  return outputs_by_request(report);
}

// How many greedy outputs of `report` differ from `expected` (outputs_by_request of a reference
// run of the same dataset); every request must be in both. The differing requests are logged.
inline int count_different_outputs(const nlohmann::json& report,
                                   const std::map<int, nlohmann::json>& expected) {
  const std::map<int, nlohmann::json> served = outputs_by_request(report);
  REQUIRE(served.size() == expected.size());
  int num_different = 0;
  for (const auto& [id, output_ids] : served) {
    if (output_ids == expected.at(id)) continue;
    ++num_different;
    UNSCOPED_INFO("request " << id << ": " << output_ids.dump() << " instead of "
                             << expected.at(id).dump());
  }
  return num_different;
}

// An eep-bench report in which all `num_prompts` requests succeeded with the greedy outputs of
// `expected`.
inline void check_served_as_expected(const nlohmann::json& report,
                                     const std::map<int, nlohmann::json>& expected,
                                     int num_prompts) {
  CHECK(report["summary"]["failed"] == 0);
  CHECK(report["summary"]["completed"] == num_prompts);
  CHECK(count_different_outputs(report, expected) == 0);
}

inline bool process_alive(pid_t pid) {
  // A reaped process is gone; a zombie would still answer kill(0), so look at /proc too.
  if (::kill(pid, 0) != 0) return false;
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

// The fleet keys every process of this test run uses (main.cpp puts them in EEP_KEYS_DIR).
inline std::string test_keys_dir() {
  const char* dir = std::getenv("EEP_KEYS_DIR");
  REQUIRE(dir != nullptr);
  return dir;
}

// A client's CURVE keys from the test run's keys directory: "worker" or "admin".
inline CurveClientKeys test_client_keys(const std::string& key_name) {
  ClientKeyOptions options;
  options.keys_dir = test_keys_dir();
  auto keys = load_client_keys(options, key_name);
  INFO(keys.status().to_string());
  REQUIRE(keys.is_ok());
  return keys.value().value();
}

// The admin socket at `endpoint` with the operators' key, no token.
inline AdminConnection admin_connection(const std::string& endpoint) {
  return AdminConnection{endpoint, "", test_client_keys("admin")};
}

// A loopback port that was free a moment ago (a race with other processes is possible, and
// harmless for tests: the bind then fails loudly).
inline int free_port() {
  zmq::context_t context;
  zmq::socket_t socket(context, zmq::socket_type::rep);
  socket.bind("tcp://127.0.0.1:*");
  const std::string endpoint = socket.get(zmq::sockopt::last_endpoint);
  return std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
}

// Where a fleet's coordinator runs and listens. The default is this test's own network on
// loopback; a host of tests/hosts/network_hosts.h runs it in its namespace (the prefix
// `ip netns exec NAME`) with the control socket on the host's address.
struct FleetPlace {
  std::vector<std::string> command_prefix;  // before the coordinator's and eepctl's command lines
  std::string control = "tcp://127.0.0.1:*";
};

class Fleet {
 public:
  // Starts eep-coordinator with admin/control on free loopback ports and the given flags.
  explicit Fleet(std::vector<std::string> flags, std::map<std::string, std::string> env = {},
                 bool expect_ready = true, FleetPlace place = {})
      : place_(std::move(place)) {
    std::vector<std::string> argv = place_.command_prefix;
    argv.insert(argv.end(), {bin("eep-coordinator"), "--admin", "tcp://127.0.0.1:*", "--control",
                             place_.control, "--http", "127.0.0.1:0", "--ready-file",
                             dir_.file("ready.json"), "--worker-log-dir", dir_.path()});
    // A store port range of its own, so fleets of tests running side by side rarely meet, below
    // Linux's ephemeral ports (32768-60999): Gloo's pairs and every outgoing connection take
    // those, and one that holds a store port makes the scale fail with "Address already in use".
    static std::atomic<int> num_fleets{0};
    const int base = 20000 + (::getpid() * 7 + num_fleets++ * 50) % 9000;
    if (std::find(flags.begin(), flags.end(), "--port-range") == flags.end()) {
      argv.insert(argv.end(),
                  {"--port-range", std::to_string(base) + "-" + std::to_string(base + 49)});
    }
    argv.insert(argv.end(), flags.begin(), flags.end());
    // eepctl speaks to it as it was started: its keys, or plaintext.
    for (size_t i = 0; i < flags.size(); ++i) {
      if (flags[i] == "--insecure-plaintext") eepctl_flags_.push_back(flags[i]);
      if (flags[i] == "--keys-dir" && i + 1 < flags.size()) {
        eepctl_flags_.insert(eepctl_flags_.end(), {flags[i], flags[i + 1]});
      }
    }
    SpawnOptions options;
    options.log_path = log_path();
    options.env = std::move(env);
    auto child = ChildProcess::spawn(argv, options);
    REQUIRE(child.is_ok());
    coordinator_ = std::move(child).value();
    if (!expect_ready) return;
    const bool ready = eventually(
        [&] { return std::filesystem::exists(dir_.file("ready.json")) || !coordinator_.running(); },
        10s);
    INFO(coordinator_log());
    REQUIRE(ready);
    REQUIRE(coordinator_.running());
    json endpoints = json::parse(read_file(dir_.file("ready.json")));
    admin_ = endpoints["admin"];
    control_ = endpoints["control"];
    if (endpoints.contains("http_port")) http_port_ = endpoints["http_port"];
  }

  ~Fleet() {
    if (coordinator_.running()) {
      eepctl({"shutdown"}, 5s);
      if (!coordinator_.wait_for(10s)) coordinator_.stop(3s);
    }
  }

  const std::string& admin() const { return admin_; }
  const std::string& control() const { return control_; }
  int http_port() const { return http_port_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(http_port_); }
  ChildProcess& coordinator() { return coordinator_; }
  const TempDir& dir() const { return dir_; }
  std::string log_path() const { return dir_.file("coordinator.log"); }
  std::string coordinator_log() const { return read_file(log_path()); }

  // `argv` as it runs where the coordinator runs (its namespace: its loopback, its HTTP port).
  std::vector<std::string> here(const std::vector<std::string>& argv) const {
    std::vector<std::string> placed = place_.command_prefix;
    placed.insert(placed.end(), argv.begin(), argv.end());
    return placed;
  }

  CommandResult eepctl(std::vector<std::string> args, std::chrono::milliseconds timeout = 30s) {
    std::vector<std::string> argv = here({bin("eepctl"), "--admin", admin_});
    argv.insert(argv.end(), eepctl_flags_.begin(), eepctl_flags_.end());
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, timeout);
  }

  // `eepctl status --json`, parsed.
  json status() {
    CommandResult result = eepctl({"status", "--json"});
    INFO(result.output);
    REQUIRE(result.exit_code == 0);
    return json::parse(result.output);
  }

  std::vector<json> workers_in(const std::string& state) {
    std::vector<json> found;
    const json current = status();  // kept alive for the loop
    for (const json& worker : current["workers"]) {
      if (worker["state"] == state) found.push_back(worker);
    }
    return found;
  }

  bool has_active(size_t n) { return workers_in("ACTIVE").size() == n; }

 private:
  FleetPlace place_;
  TempDir dir_;
  ChildProcess coordinator_;
  std::string admin_;
  std::string control_;
  int http_port_ = 0;
  std::vector<std::string> eepctl_flags_;
};

// A small eep-bench load (n prompts of 16 tokens, 8 out): every request succeeds.
inline void check_serves_load(Fleet& fleet, int num_prompts) {
  const CommandResult bench =
      run_command(fleet.here({bin("eep-bench"), "--base-url", fleet.base_url(), "--num-prompts",
                              std::to_string(num_prompts), "--random-input-len", "16",
                              "--random-output-len", "8", "--no-progress"}),
                  60s);
  INFO(bench.output);
  CHECK_THAT(bench.output, Catch::Contains("Successful requests:                     " +
                                           std::to_string(num_prompts)));
}

// The token ids of a streamed /v1/completions reply (curl's output), in order.
inline std::vector<int> streamed_token_ids(const std::string& sse) {
  std::vector<int> ids;
  std::istringstream lines(sse);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("data: {", 0) != 0) continue;
    const nlohmann::json chunk = nlohmann::json::parse(line.substr(6));
    for (int id : chunk["choices"][0]["token_ids"]) ids.push_back(id);
  }
  return ids;
}

// "1,2,3": a prompt in a request body, or ids to compare with eep-generate's output.
inline std::string join_ids(const std::vector<int>& ids) {
  std::string text;
  for (int id : ids) text += (text.empty() ? "" : ",") + std::to_string(id);
  return text;
}

// eep-generate's greedy tokens (ignoring EOS) for each of `prompts` ("1,2,3" each), in one
// process: the oracle that shares no code path with the fleet's scheduler and router. One
// "1,2,3" line per prompt, in order.
inline std::vector<std::string> eep_generate_outputs(const std::string& model,
                                                     const std::vector<std::string>& prompts,
                                                     int max_tokens) {
  std::vector<std::string> argv = {bin("eep-generate"),        "--model",     model, "--max-tokens",
                                   std::to_string(max_tokens), "--ignore-eos"};
  for (const std::string& prompt : prompts) {
    argv.push_back("--prompt-ids");
    argv.push_back(prompt);
  }
  // run_command merges stderr (timing and log lines) into the output: keep the lines of ids.
  const CommandResult reference = run_command(argv, 120s);
  INFO(reference.output);
  REQUIRE(reference.exit_code == 0);
  std::vector<std::string> lines;
  std::istringstream output(reference.output);
  for (std::string line; std::getline(output, line);) {
    if (!line.empty() && line.find_first_not_of("0123456789,") == std::string::npos) {
      lines.push_back(line);
    }
  }
  REQUIRE(lines.size() == prompts.size());
  return lines;
}

// A streaming greedy completion of `prompt` through curl (its output in dir/stream<idx>.out),
// returned once tokens flow, so the router has counted it before the next request is sent.
inline ChildProcess start_stream(const TempDir& dir, Fleet& fleet, int idx,
                                 const std::string& prompt, int max_tokens) {
  const std::string body = dir.file("request" + std::to_string(idx) + ".json");
  write_file(body, R"({"model":"tiny","prompt":[)" + prompt + R"(],"max_tokens":)" +
                       std::to_string(max_tokens) +
                       R"(,"temperature":0,"ignore_eos":true,"stream":true})");
  SpawnOptions options;
  options.log_path = dir.file("stream" + std::to_string(idx) + ".out");
  auto curl = ChildProcess::spawn({"curl", "-sN", fleet.base_url() + "/v1/completions", "-H",
                                   "Content-Type: application/json", "--data-binary", "@" + body},
                                  options);
  REQUIRE(curl.is_ok());
  REQUIRE(eventually([&] { return read_file(options.log_path).size() > 1000; }, 20s));
  return std::move(curl).value();
}

}  // namespace eep::testing
