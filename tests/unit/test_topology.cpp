// Which ranks share a host (coordinator/include/eep/coordinator/topology.h, docs/hosts.md): the
// order in which a scale takes spares, the regrouping of a recovery's members, and the host
// count the hierarchical EPLB policy gets.
#include <catch2/catch.hpp>

#include "eep/coordinator/topology.h"

using namespace eep;
using namespace eep::coordinator;

namespace {

std::vector<WorkerRecord> records(const std::vector<std::pair<std::string, std::string>>& specs) {
  std::vector<WorkerRecord> workers;
  for (const auto& [id, host] : specs) {
    WorkerRecord record;
    record.id = id;
    record.host = host;
    workers.push_back(record);
  }
  return workers;
}

std::vector<std::string> ids_in_host_order(const std::vector<std::string>& member_hosts,
                                           const std::vector<WorkerRecord>& spares) {
  std::vector<const WorkerRecord*> pointers;
  for (const WorkerRecord& spare : spares) pointers.push_back(&spare);
  std::vector<std::string> ids;
  for (const WorkerRecord* spare : spares_in_host_order(member_hosts, pointers)) {
    ids.push_back(spare->id);
  }
  return ids;
}

}  // namespace

TEST_CASE("a scale takes spares host by host, the last member's host first", "[topology]") {
  // Registered interleaved, as hosts that start at once do.
  const std::vector<WorkerRecord> spares =
      records({{"b-1", "B"}, {"c-0", "C"}, {"a-2", "A"}, {"b-0", "B"}, {"c-1", "C"}});
  // Ranks on A: A's spare continues its block, then whole hosts (B before C on a tie).
  CHECK(ids_in_host_order({"A", "A"}, spares) ==
        std::vector<std::string>{"a-2", "b-0", "b-1", "c-0", "c-1"});
  // Ranks on A then B: B's block goes on (none left), A's spare comes last (it cannot join
  // A's block any more), and the host with more spares first.
  const std::vector<WorkerRecord> more =
      records({{"a-2", "A"}, {"c-0", "C"}, {"d-0", "D"}, {"d-1", "D"}});
  CHECK(ids_in_host_order({"A", "B"}, more) ==
        std::vector<std::string>{"d-0", "d-1", "c-0", "a-2"});
  // An empty fleet: whole hosts, the fullest first.
  CHECK(ids_in_host_order({}, spares) ==
        std::vector<std::string>{"b-0", "b-1", "c-0", "c-1", "a-2"});
}

TEST_CASE("a recovery's members are regrouped by host, each at its first place", "[topology]") {
  CHECK(group_by_host({"A", "B", "B", "A", "C", "B"}) == std::vector<size_t>{0, 3, 1, 2, 5, 4});
  CHECK(group_by_host({}).empty());
  CHECK(group_by_host({"A", "A"}) == std::vector<size_t>{0, 1});
}

TEST_CASE("the hierarchical EPLB policy gets the hosts when they hold equal blocks of ranks",
          "[topology]") {
  CHECK(num_uniform_hosts({"A", "A", "B", "B", "C", "C"}) == 3);
  CHECK(num_uniform_hosts({"A", "A"}) == 1);
  CHECK(num_uniform_hosts({"A", "B"}) == 2);
  CHECK(num_uniform_hosts({"A", "A", "B"}) == 1);       // unequal blocks
  CHECK(num_uniform_hosts({"A", "B", "A", "B"}) == 1);  // a host in two blocks
  CHECK(num_uniform_hosts({}) == 1);
}
