// Ports for the key-value stores through which each group of each generation rendezvouses.
// Ranges are configured per host ("host=lo-hi"; "*" for any host without its own range). A port
// is live from allocate() until release_generation() of the generation that holds it; a live port
// is never handed out twice. Released ports go to the back of the queue, so a port that was just
// closed (and may sit in TIME_WAIT) is reused last. Only the coordinator's event loop calls this.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "eep/common/status.h"

namespace eep::coordinator {

struct PortRange {
  std::string host;  // "*" matches any host without its own range
  int first = 0;     // inclusive
  int last = 0;      // inclusive
};

// Parses "29500-29599" (host "*") or "node1=29500-29599".
Result<PortRange> parse_port_range(const std::string& text);

class PortAllocator {
 public:
  // Fails when a range is empty, outside 1..65535, or overlaps another range of the same host.
  static Result<PortAllocator> create(const std::vector<PortRange>& ranges);

  // Says whether `port` on `host` is held by another process (true: skip it); unknown hosts
  // answer false. Ports it refuses go to the back of the queue.
  using Probe = std::function<bool(const std::string& host, int port)>;
  void set_probe(Probe probe) { probe_ = std::move(probe); }

  // A free port on host for generation, one the probe does not find taken; kResourceExhausted
  // (naming the range) when none is left.
  Result<int> allocate(const std::string& host, int64_t generation);
  // Returns every port of generation to the pool.
  void release_generation(int64_t generation);

  size_t num_free(const std::string& host) const;
  size_t num_live() const { return live_.size(); }
  bool is_live(const std::string& host, int port) const;

 private:
  struct HostPool {
    std::vector<PortRange> ranges;
    std::deque<int> free;  // in the order they will be handed out
  };
  HostPool* pool_for(const std::string& host);
  const HostPool* pool_for(const std::string& host) const;
  std::string describe_ranges(const HostPool& pool) const;

  std::map<std::string, HostPool> pools_;  // by host key ("*" included)
  struct LivePort {
    std::string pool_key;
    int port;
    int64_t generation;
    auto operator<=>(const LivePort&) const = default;
  };
  std::set<LivePort> live_;
  Probe probe_;
};

}  // namespace eep::coordinator
