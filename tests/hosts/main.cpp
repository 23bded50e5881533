// The entry point of the tests of fleets across hosts (network namespaces as hosts,
// tests/hosts/network_hosts.h). Where namespaces cannot be made (not root, a container that
// refuses them) every test is skipped, loudly: it prints why and exits 77, which ctest shows as
// "Skipped" (SKIP_RETURN_CODE, tests/CMakeLists.txt), as the GPU tests do without a GPU. Listing
// the tests (ctest's discovery) works anywhere. Like tests/integration/main.cpp, one CURVE keys
// directory per test process (test_fleet_keys.h).
#define CATCH_CONFIG_RUNNER
#include <cstdio>

#include <catch2/catch.hpp>

#include "../integration/test_fleet_keys.h"
#include "network_hosts.h"

int main(int argc, char** argv) {
  Catch::Session session;
  if (const int bad = session.applyCommandLine(argc, argv); bad != 0) return bad;
  const Catch::ConfigData& config = session.configData();
  const bool listing = config.listTests || config.listTestNamesOnly || config.listTags ||
                       config.listReporters || config.showHelp;
  if (!listing) {
    if (auto why = eep::testing::namespaces_unavailable()) {
      std::printf(
          "SKIPPED: the tests of fleets across hosts need network namespaces, and this machine "
          "cannot make them: %s. Run them as root where `ip netns add` works (CI does).\n",
          why->c_str());
      return 77;
    }
  }
  return eep::testing::run_with_fleet_keys([&] { return session.run(); });
}
