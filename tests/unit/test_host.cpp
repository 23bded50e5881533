// The address a worker advertises by default (common/include/eep/common/host.h, docs/hosts.md):
// its address on the route to the coordinator, found without sending anything.
#include <catch2/catch.hpp>

#include "eep/common/host.h"

using namespace eep;

TEST_CASE("a worker's default address is the one on the route to its coordinator", "[host]") {
  // A coordinator on loopback is reached from loopback.
  CHECK(local_address_towards("tcp://127.0.0.1:5711") == std::optional<std::string>("127.0.0.1"));
  CHECK(local_address_towards("tcp://localhost:5711") == std::optional<std::string>("127.0.0.1"));
  // Endpoints with no IPv4 route to take.
  CHECK_FALSE(local_address_towards("ipc:///tmp/eep-control").has_value());
  CHECK_FALSE(local_address_towards("tcp://[::1]:5711").has_value());
  CHECK_FALSE(local_address_towards("tcp://127.0.0.1").has_value());
}
