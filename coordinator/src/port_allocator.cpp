#include "eep/coordinator/port_allocator.h"

#include <charconv>

namespace eep::coordinator {
namespace {

bool parse_int(std::string_view text, int* value) {
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return ec == std::errc() && ptr == text.data() + text.size();
}

}  // namespace

Result<PortRange> parse_port_range(const std::string& text) {
  PortRange range;
  std::string_view spec = text;
  range.host = "*";
  if (auto eq = spec.find('='); eq != std::string_view::npos) {
    range.host = std::string(spec.substr(0, eq));
    spec = spec.substr(eq + 1);
  }
  auto dash = spec.find('-');
  if (range.host.empty() || dash == std::string_view::npos ||
      !parse_int(spec.substr(0, dash), &range.first) ||
      !parse_int(spec.substr(dash + 1), &range.last)) {
    return error(ErrorCode::kInvalidArgument,
                 "bad port range '" + text + "': expected FIRST-LAST or HOST=FIRST-LAST");
  }
  if (range.first < 1 || range.last > 65535 || range.first > range.last) {
    return error(ErrorCode::kInvalidArgument,
                 "bad port range '" + text + "': need 1 <= FIRST <= LAST <= 65535");
  }
  return range;
}

Result<PortAllocator> PortAllocator::create(const std::vector<PortRange>& ranges) {
  PortAllocator allocator;
  for (const PortRange& range : ranges) {
    if (range.first < 1 || range.last > 65535 || range.first > range.last) {
      return error(ErrorCode::kInvalidArgument,
                   "empty or invalid port range for host " + range.host);
    }
    HostPool& pool = allocator.pools_[range.host];
    for (const PortRange& other : pool.ranges) {
      if (range.first <= other.last && other.first <= range.last) {
        return error(ErrorCode::kInvalidArgument,
                     "port ranges " + std::to_string(range.first) + "-" +
                         std::to_string(range.last) + " and " + std::to_string(other.first) + "-" +
                         std::to_string(other.last) + " overlap for host " + range.host);
      }
    }
    pool.ranges.push_back(range);
    for (int port = range.first; port <= range.last; ++port) pool.free.push_back(port);
  }
  return allocator;
}

PortAllocator::HostPool* PortAllocator::pool_for(const std::string& host) {
  auto it = pools_.find(host);
  if (it == pools_.end()) it = pools_.find("*");
  return it == pools_.end() ? nullptr : &it->second;
}

const PortAllocator::HostPool* PortAllocator::pool_for(const std::string& host) const {
  return const_cast<PortAllocator*>(this)->pool_for(host);
}

std::string PortAllocator::describe_ranges(const HostPool& pool) const {
  std::string text;
  for (const PortRange& range : pool.ranges) {
    if (!text.empty()) text += ",";
    text += range.host + "=" + std::to_string(range.first) + "-" + std::to_string(range.last);
  }
  return text;
}

Result<int> PortAllocator::allocate(const std::string& host, int64_t generation) {
  HostPool* pool = pool_for(host);
  if (pool == nullptr) {
    return error(ErrorCode::kResourceExhausted, "no port range is configured for host '" + host +
                                                    "'; add --port-range " + host +
                                                    "=FIRST-LAST (or a range for every host)");
  }
  if (pool->free.empty()) {
    return error(ErrorCode::kResourceExhausted,
                 "store ports exhausted on host '" + host + "' (range " + describe_ranges(*pool) +
                     ", " + std::to_string(live_.size()) +
                     " live); widen --port-range or wait for a generation to retire");
  }
  // A port that another process holds (another fleet's store, any listener) is skipped.
  size_t num_tried = 0;
  int port = pool->free.front();
  pool->free.pop_front();
  while (probe_ && probe_(host, port)) {
    pool->free.push_back(port);
    if (++num_tried == pool->free.size()) {
      return error(ErrorCode::kResourceExhausted,
                   "every free store port on host '" + host + "' (range " + describe_ranges(*pool) +
                       ") is held by another process; widen or move --port-range");
    }
    port = pool->free.front();
    pool->free.pop_front();
  }
  const std::string key = pools_.count(host) ? host : "*";
  live_.insert(LivePort{key, port, generation});
  return port;
}

void PortAllocator::release_generation(int64_t generation) {
  for (auto it = live_.begin(); it != live_.end();) {
    if (it->generation == generation) {
      pools_[it->pool_key].free.push_back(it->port);
      it = live_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t PortAllocator::num_free(const std::string& host) const {
  const HostPool* pool = pool_for(host);
  return pool == nullptr ? 0 : pool->free.size();
}

bool PortAllocator::is_live(const std::string& host, int port) const {
  const std::string key = pools_.count(host) ? host : "*";
  for (const LivePort& live : live_) {
    if (live.pool_key == key && live.port == port) return true;
  }
  return false;
}

}  // namespace eep::coordinator
