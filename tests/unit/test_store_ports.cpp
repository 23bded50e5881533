// A store port that is already taken: the error says when the kernel's ephemeral range is why.
#include <catch2/catch.hpp>

#include "eep/worker/comm/kv_store.h"

using namespace eep;
using namespace eep::worker;

TEST_CASE("ephemeral_port_hint names the range only for a port inside it", "[kv_store]") {
  const std::string range = "32768\t60999\n";
  CHECK_THAT(ephemeral_port_hint(43702, range), Catch::Contains("32768-60999"));
  CHECK_THAT(ephemeral_port_hint(43702, range), Catch::Contains("--port-range outside"));
  CHECK(ephemeral_port_hint(32768, range) != "");
  CHECK(ephemeral_port_hint(60999, range) != "");
  CHECK(ephemeral_port_hint(29500, range) == "");  // the coordinator's default range
  CHECK(ephemeral_port_hint(61000, range) == "");
  CHECK(ephemeral_port_hint(0, range) == "");   // "any port" cannot be taken
  CHECK(ephemeral_port_hint(43702, "") == "");  // no /proc: no guess
}

TEST_CASE("a store on a port the kernel handed out as ephemeral fails with the hint",
          "[kv_store]") {
  // Port 0 makes the kernel pick from its ephemeral range, as it does for outgoing connections.
  auto first = StoreServer::start("127.0.0.1", 0);
  REQUIRE(first.is_ok());
  const int taken = first.value()->port();
  auto second = StoreServer::start("127.0.0.1", taken);
  REQUIRE_FALSE(second.is_ok());
  CHECK(second.status().code() == ErrorCode::kIoError);
  CHECK_THAT(second.status().message(), Catch::Contains("Address already in use"));
  CHECK_THAT(second.status().message(), Catch::Contains("ephemeral port range"));
}
