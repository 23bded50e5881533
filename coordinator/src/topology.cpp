#include "eep/coordinator/topology.h"

#include <algorithm>
#include <map>
#include <set>

namespace eep::coordinator {

std::vector<const WorkerRecord*> spares_in_host_order(const std::vector<std::string>& member_hosts,
                                                      std::vector<const WorkerRecord*> spares) {
  std::map<std::string, std::vector<const WorkerRecord*>> by_host;
  for (const WorkerRecord* spare : spares) by_host[spare->host].push_back(spare);
  for (auto& [host, group] : by_host) {
    std::sort(group.begin(), group.end(),
              [](const WorkerRecord* a, const WorkerRecord* b) { return a->id < b->id; });
  }
  const std::set<std::string> with_members(member_hosts.begin(), member_hosts.end());
  const std::string last_host = member_hosts.empty() ? std::string() : member_hosts.back();
  // Lower sorts first: (class, -spares, host).
  auto rank_of = [&](const std::string& host) {
    const int group_class = !member_hosts.empty() && host == last_host ? 0
                            : with_members.count(host)                 ? 2
                                                                       : 1;
    return std::make_tuple(group_class, -static_cast<int>(by_host[host].size()), host);
  };
  std::vector<std::string> hosts;
  for (const auto& [host, group] : by_host) hosts.push_back(host);
  std::sort(hosts.begin(), hosts.end(),
            [&](const std::string& a, const std::string& b) { return rank_of(a) < rank_of(b); });
  std::vector<const WorkerRecord*> ordered;
  for (const std::string& host : hosts) {
    ordered.insert(ordered.end(), by_host[host].begin(), by_host[host].end());
  }
  return ordered;
}

std::vector<size_t> group_by_host(const std::vector<std::string>& hosts) {
  std::vector<std::string> first_seen;
  for (const std::string& host : hosts) {
    if (std::find(first_seen.begin(), first_seen.end(), host) == first_seen.end()) {
      first_seen.push_back(host);
    }
  }
  std::vector<size_t> order;
  for (const std::string& host : first_seen) {
    for (size_t idx = 0; idx < hosts.size(); ++idx) {
      if (hosts[idx] == host) order.push_back(idx);
    }
  }
  return order;
}

int num_uniform_hosts(const std::vector<std::string>& hosts_by_rank) {
  if (hosts_by_rank.empty()) return 1;
  std::vector<int> block_sizes;
  std::set<std::string> seen;
  for (size_t rank = 0; rank < hosts_by_rank.size(); ++rank) {
    if (rank == 0 || hosts_by_rank[rank] != hosts_by_rank[rank - 1]) {
      if (!seen.insert(hosts_by_rank[rank]).second) return 1;  // a host in two blocks
      block_sizes.push_back(0);
    }
    ++block_sizes.back();
  }
  const bool equal = std::all_of(block_sizes.begin(), block_sizes.end(),
                                 [&](int size) { return size == block_sizes.front(); });
  return equal ? static_cast<int>(block_sizes.size()) : 1;
}

}  // namespace eep::coordinator
