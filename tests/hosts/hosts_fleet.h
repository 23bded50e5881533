// A fleet across hosts for the tests (docs/hosts.md): a coordinator in host 0 with
// `--launcher none`, its control socket on that host's address, and CPU workers started in the
// other hosts as operators start them (the same command line in each host, no --host: a worker
// finds the address it is reached at), each host with its own worker key.
#pragma once

#include <set>

#include "network_hosts.h"

namespace eep::testing {

// `eep-keygen ARGS`, REQUIREd to succeed.
inline void keygen(std::vector<std::string> args) {
  args.insert(args.begin(), bin("eep-keygen"));
  const CommandResult result = run_command(args, 10s);
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
}

// The fleet's keys made ahead (a coordinator off loopback makes none itself), with one worker
// key per worker host, authorized for that host's ids ("h1-*"): dir/keys/<host>.key.
inline std::string make_host_keys(const TempDir& dir, const NetworkHosts& hosts) {
  const std::string keys = dir.file("keys");
  keygen({"--dir", keys});
  for (size_t idx = 1; idx < hosts.size(); ++idx) {
    keygen({"--dir", keys, "--worker", hosts.name(idx), "--ids", hosts.name(idx) + "-*"});
  }
  return keys;
}

// `eep-worker` number `n` of host `host_idx`: worker id "<host>-<n>", registering with the
// coordinator's control endpoint with that host's key. Its log: dir/<host>-<n>.log.
inline ChildProcess start_host_worker(const TempDir& dir, const NetworkHosts& hosts,
                                      size_t host_idx, int n, const std::string& control,
                                      const std::string& keys, const std::string& model,
                                      const std::vector<std::string>& extra = {}) {
  const std::string id = hosts.name(host_idx) + "-" + std::to_string(n);
  std::vector<std::string> argv = hosts.in(host_idx);
  // clang-format off
  argv.insert(argv.end(), {bin("eep-worker"), "--coordinator", control, "--worker-id", id,
                           "--keys-dir", keys, "--key-file", keys + "/" + hosts.name(host_idx) + ".key",
                           "--model", model, "--kv-blocks", "256", "--device-idx", std::to_string(n),
                           "--cpu-threads", "1"});
  // clang-format on
  argv.insert(argv.end(), extra.begin(), extra.end());
  SpawnOptions options;
  options.log_path = dir.file(id + ".log");
  auto worker = ChildProcess::spawn(argv, options);
  REQUIRE(worker.is_ok());
  return std::move(worker).value();
}

// The coordinator's flags for a fleet of `hosts` (host 0 the coordinator's): a store port range
// per worker host, as an operator writes them.
inline std::vector<std::string> host_port_ranges(const NetworkHosts& hosts) {
  std::vector<std::string> flags;
  for (size_t idx = 1; idx < hosts.size(); ++idx) {
    const int first = 29500 + static_cast<int>(idx) * 100;
    flags.insert(flags.end(), {"--port-range", hosts.address(idx) + "=" + std::to_string(first) +
                                                   "-" + std::to_string(first + 49)});
  }
  return flags;
}

// The place of a coordinator in host 0, its control socket on the host's address.
inline FleetPlace coordinator_place(const NetworkHosts& hosts) {
  return FleetPlace{hosts.in(0), "tcp://" + hosts.address(0) + ":*"};
}

// The hosts of the ACTIVE workers in rank order, one entry per rank.
inline std::vector<std::string> hosts_by_rank(const json& status) {
  std::vector<std::pair<int, std::string>> ranked;
  for (const json& worker : status["workers"]) {
    if (worker["state"] == "ACTIVE") ranked.emplace_back(worker["rank"], worker["host"]);
  }
  std::sort(ranked.begin(), ranked.end());
  std::vector<std::string> hosts;
  for (const auto& [rank, host] : ranked) hosts.push_back(host);
  return hosts;
}

// Whether the ranks of each host are consecutive: once the ranks leave a host, they never
// come back to it.
inline bool hosts_consecutive(const std::vector<std::string>& by_rank) {
  std::set<std::string> left;
  for (size_t rank = 0; rank < by_rank.size(); ++rank) {
    if (left.count(by_rank[rank])) return false;
    if (rank + 1 < by_rank.size() && by_rank[rank + 1] != by_rank[rank]) left.insert(by_rank[rank]);
  }
  return true;
}

}  // namespace eep::testing
