// Which ranks share a host (docs/hosts.md). A worker's host is the address it advertises
// (eep-worker --host, by default its address on the route to the coordinator), so workers of one
// machine agree on it and workers of two machines never do. Pure functions over the membership,
// unit-tested on plain values.
#pragma once

#include <string>
#include <vector>

#include "eep/coordinator/membership.h"

namespace eep::coordinator {

// The order in which a scale-up takes `spares` after the staying ranks, whose hosts in rank
// order are `member_hosts`, so that the ranks of one host stay consecutive: first the spares of
// the last member's host (its block goes on), then whole hosts that hold no member, the host
// with the most spares first (a scale takes whole hosts where it can), then the spares of hosts
// that already have members further down (their ranks cannot be consecutive any more). Within a
// host, by worker id. Ties between hosts go to the smaller host string.
std::vector<const WorkerRecord*> spares_in_host_order(const std::vector<std::string>& member_hosts,
                                                      std::vector<const WorkerRecord*> spares);

// `hosts[i]`'s index order regrouped so that equal hosts are adjacent, each host at the place of
// its first appearance (stable): the members of a recovery, where every rank reads its weights
// anew and ranks may be renumbered freely.
std::vector<size_t> group_by_host(const std::vector<std::string>& hosts);

// The number of hosts when the ranks (their hosts in rank order) form that many consecutive
// blocks of equal size, which the hierarchical EPLB policy needs (node n = ranks
// [n * R / N, (n + 1) * R / N)); 1 otherwise (the global policy).
int num_uniform_hosts(const std::vector<std::string>& hosts_by_rank);

}  // namespace eep::coordinator
