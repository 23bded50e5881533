// Hosts for the tests of fleets across hosts (docs/hosts.md): each host is a network namespace
// with one interface on a private network, 10.77.0.0/24, joined by a bridge that lives in a
// namespace of its own. Nothing touches the namespace the tests run in, so no traffic of these
// hosts can leave them: no route leads out of 10.77.0.0/24. Created by the constructor, removed
// by the destructor (also when a test fails); the names carry this process's id, so tests that
// run side by side never meet, and namespaces left by a test process that died are removed by
// the next one. Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2: namespaces_unavailable()
// says why not, and the tests are then skipped (tests/hosts/main.cpp).
#pragma once

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "../integration/fleet.h"

namespace eep::testing {

// Runs `argv` to completion (at most `timeout`): exit code and output. No Catch2 assertion
// inside, unlike run_command: main() calls it before any test.
inline CommandResult run_quietly(const std::vector<std::string>& argv,
                                 std::chrono::milliseconds timeout = 20s) {
  TempDir dir;
  SpawnOptions options;
  options.log_path = dir.file("out.log");
  auto child = ChildProcess::spawn(argv, options);
  CommandResult result;
  if (!child.is_ok()) {
    result.output = child.status().to_string();
    return result;
  }
  if (!child->wait_for(timeout)) child->stop(1s);
  const int status = child->wait_status().value_or(-1);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.output = read_file(dir.file("out.log"));
  return result;
}

// `ip ARGS` (iproute2), its output on failure in the returned message; nullopt on success.
inline std::optional<std::string> run_ip(std::vector<std::string> args) {
  args.insert(args.begin(), "ip");
  const CommandResult result = run_quietly(args);
  if (result.exit_code == 0) return std::nullopt;
  std::string command;
  for (const std::string& arg : args) command += (command.empty() ? "" : " ") + arg;
  return command + ": exit " + std::to_string(result.exit_code) + ": " + result.output;
}

// Why this machine cannot give the tests namespaces (not root, no `ip`, a kernel or container
// that refuses), tried by making and removing one; nullopt when it can.
inline std::optional<std::string> namespaces_unavailable() {
  if (::geteuid() != 0) return "not root (network namespaces need CAP_SYS_ADMIN)";
  if (!find_in_path("ip")) return "no `ip` command (iproute2) on PATH";
  const std::string probe = "eep-t" + std::to_string(::getpid()) + "-probe";
  if (auto failed = run_ip({"netns", "add", probe})) return failed;
  std::optional<std::string> failed = run_ip({"-n", probe, "link", "add", "br0", "type", "bridge"});
  run_ip({"netns", "del", probe});
  return failed;
}

class NetworkHosts {
 public:
  static constexpr const char* kSubnet = "10.77.0";
  static constexpr int kPrefixLength = 24;

  // One namespace per name, with the address 10.77.0.<first_octet + index>. REQUIREs success.
  explicit NetworkHosts(const std::vector<std::string>& names) {
    static std::atomic<int> num_sets{0};
    prefix_ = "eep-t" + std::to_string(::getpid()) + "-" + std::to_string(num_sets++) + "-";
    remove_stale();
    switch_ = prefix_ + "switch";
    require(run_ip({"netns", "add", switch_}));
    created_.push_back(switch_);
    require(run_ip({"-n", switch_, "link", "add", "br0", "type", "bridge"}));
    require(run_ip({"-n", switch_, "link", "set", "br0", "up"}));
    for (size_t idx = 0; idx < names.size(); ++idx) {
      Host host;
      host.name = names[idx];
      host.netns = prefix_ + names[idx];
      host.address = std::string(kSubnet) + "." + std::to_string(kFirstOctet + idx);
      host.port = "p" + std::to_string(idx);
      require(run_ip({"netns", "add", host.netns}));
      created_.push_back(host.netns);
      // The pair's host end is eth0 in the host; its other end is a port of the bridge.
      require(run_ip({"-n", switch_, "link", "add", host.port, "type", "veth", "peer", "name",
                      "eth0", "netns", host.netns}));
      require(run_ip({"-n", switch_, "link", "set", host.port, "master", "br0"}));
      require(run_ip({"-n", switch_, "link", "set", host.port, "up"}));
      require(run_ip({"-n", host.netns, "link", "set", "lo", "up"}));
      require(run_ip({"-n", host.netns, "addr", "add",
                      host.address + "/" + std::to_string(kPrefixLength), "dev", "eth0"}));
      require(run_ip({"-n", host.netns, "link", "set", "eth0", "up"}));
      hosts_.push_back(std::move(host));
    }
  }

  ~NetworkHosts() {
    // The processes in them are gone by now (fleets and workers are declared after the hosts);
    // a namespace still used by a process would only lose its name.
    for (auto it = created_.rbegin(); it != created_.rend(); ++it) run_ip({"netns", "del", *it});
  }

  NetworkHosts(const NetworkHosts&) = delete;
  NetworkHosts& operator=(const NetworkHosts&) = delete;

  // The prefix that runs a command in host `idx`: `ip netns exec NAME` (which execs the command
  // in place: the child's pid is the command's).
  std::vector<std::string> in(size_t idx) const {
    return {"ip", "netns", "exec", hosts_.at(idx).netns};
  }
  size_t size() const { return hosts_.size(); }
  const std::string& address(size_t idx) const { return hosts_.at(idx).address; }
  const std::string& name(size_t idx) const { return hosts_.at(idx).name; }
  const std::string& netns(size_t idx) const { return hosts_.at(idx).netns; }

  // The host's link to the bridge down (as a cable pulled) or up again.
  void set_link(size_t idx, bool up) {
    require(run_ip({"-n", hosts_.at(idx).netns, "link", "set", "eth0", up ? "up" : "down"}));
  }

 private:
  static constexpr int kFirstOctet = 1;

  struct Host {
    std::string name;
    std::string netns;
    std::string address;
    std::string port;  // its bridge port's name in the switch namespace
  };

  static void require(const std::optional<std::string>& failed) {
    INFO(failed.value_or(""));
    REQUIRE_FALSE(failed.has_value());
  }

  // Namespaces of a test process that is gone (killed before its destructors ran).
  static void remove_stale() {
    const CommandResult list = run_quietly({"ip", "netns", "list"});
    std::istringstream lines(list.output);
    std::string line;
    while (std::getline(lines, line)) {
      const std::string name = line.substr(0, line.find(' '));
      if (name.rfind("eep-t", 0) != 0) continue;
      const std::string pid = name.substr(5, name.find('-', 5) - 5);
      if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
      if (std::filesystem::exists("/proc/" + pid)) continue;
      run_ip({"netns", "del", name});
    }
  }

  std::string prefix_;
  std::string switch_;
  std::vector<Host> hosts_;
  std::vector<std::string> created_;
};

}  // namespace eep::testing
