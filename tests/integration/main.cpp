// The integration tests' main: one CURVE keys directory per test process (test_fleet_keys.h), so
// the tests run with the control plane's default: CURVE on.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "test_fleet_keys.h"

int main(int argc, char** argv) {
  return eep::testing::run_with_fleet_keys([&] { return Catch::Session().run(argc, argv); });
}
