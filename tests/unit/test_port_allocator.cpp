#include <catch2/catch.hpp>

#include <set>

#include "eep/coordinator/port_allocator.h"

using namespace eep;
using namespace eep::coordinator;

TEST_CASE("port ranges parse and bad ones are refused", "[ports]") {
  auto any = parse_port_range("29500-29599");
  REQUIRE(any.is_ok());
  CHECK(any->host == "*");
  CHECK(any->first == 29500);
  CHECK(any->last == 29599);
  auto node = parse_port_range("node1=100-101");
  REQUIRE(node.is_ok());
  CHECK(node->host == "node1");
  for (const char* bad : {"", "29500", "a-b", "10-5", "0-10", "1-70000", "=1-2", "1-2x"}) {
    INFO(bad);
    CHECK_FALSE(parse_port_range(bad).is_ok());
  }
  CHECK_FALSE(PortAllocator::create({{"*", 10, 20}, {"*", 20, 30}}).is_ok());  // overlap
  CHECK(PortAllocator::create({{"a", 10, 20}, {"b", 10, 20}}).is_ok());        // other hosts
}

TEST_CASE("allocate, exhaust, release, and never hand out a live port twice", "[ports]") {
  auto allocator = PortAllocator::create({{"*", 1000, 1003}});
  REQUIRE(allocator.is_ok());
  std::set<int> seen;
  for (int i = 0; i < 4; ++i) {
    auto port = allocator->allocate("host", 1 + i / 2);  // generations 1 and 2, two ports each
    REQUIRE(port.is_ok());
    CHECK(allocator->is_live("host", port.value()));
    CHECK(seen.insert(port.value()).second);  // no live port twice
  }
  auto exhausted = allocator->allocate("host", 3);
  REQUIRE_FALSE(exhausted.is_ok());
  CHECK(exhausted.status().code() == ErrorCode::kResourceExhausted);
  CHECK_THAT(exhausted.status().message(), Catch::Contains("1000-1003"));

  allocator->release_generation(1);
  CHECK(allocator->num_live() == 2);
  CHECK(allocator->num_free("host") == 2);
  auto again = allocator->allocate("host", 3);
  REQUIRE(again.is_ok());
  CHECK(seen.count(again.value()) == 1);  // a released port comes back
  // ...and is not one generation 2 still holds.
  for (int port : seen) {
    if (port == again.value()) continue;
    if (allocator->is_live("host", port)) CHECK(port != again.value());
  }
  allocator->release_generation(2);
  allocator->release_generation(3);
  CHECK(allocator->num_live() == 0);
  CHECK(allocator->num_free("host") == 4);
}

TEST_CASE("released ports are reused last", "[ports]") {
  auto allocator = PortAllocator::create({{"*", 1000, 1002}});
  REQUIRE(allocator.is_ok());
  CHECK(allocator->allocate("h", 1).value() == 1000);
  allocator->release_generation(1);
  CHECK(allocator->allocate("h", 2).value() == 1001);
  CHECK(allocator->allocate("h", 2).value() == 1002);
  CHECK(allocator->allocate("h", 2).value() == 1000);
}

TEST_CASE("per-host ranges and a host without one", "[ports]") {
  auto allocator = PortAllocator::create({{"a", 1000, 1000}});
  REQUIRE(allocator.is_ok());
  CHECK(allocator->allocate("a", 1).value() == 1000);
  auto other = allocator->allocate("b", 1);
  REQUIRE_FALSE(other.is_ok());
  CHECK(other.status().code() == ErrorCode::kResourceExhausted);
  CHECK_THAT(other.status().message(), Catch::Contains("no port range"));
}

TEST_CASE("ports another process holds are skipped and tried again last", "[ports]") {
  auto ports = PortAllocator::create({{"*", 100, 103}}).value();
  std::set<int> held = {100, 101};
  ports.set_probe([&](const std::string& host, int port) {
    CHECK(host == "node1");
    return held.count(port) > 0;
  });
  CHECK(ports.allocate("node1", 1).value() == 102);
  CHECK(ports.allocate("node1", 1).value() == 103);
  // Only held ports are left: refused, naming why.
  auto none = ports.allocate("node1", 2);
  REQUIRE_FALSE(none.is_ok());
  CHECK_THAT(none.status().message(), Catch::Contains("held by another process"));
  held.clear();  // the other process went away
  CHECK(ports.allocate("node1", 2).value() == 100);
}
