// The integration tests' main: every process of a test (coordinators, workers, eepctl, eep-bench)
// finds the fleet's CURVE keys in one directory of this test process (EEP_KEYS_DIR, inherited),
// made here and removed at exit, so the tests run with the control plane's default: CURVE on.
#define CATCH_CONFIG_RUNNER
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include <catch2/catch.hpp>

#include "eep/common/fleet_keys.h"

int main(int argc, char** argv) {
  std::string pattern = (std::filesystem::temp_directory_path() / "eep-test-keys-XXXXXX").string();
  const std::string dir = ::mkdtemp(pattern.data()) + std::string("/keys");
  auto made = eep::ensure_fleet_keys(dir);
  if (!made.is_ok()) {
    std::cerr << "cannot make the test fleet's keys: " << made.status().to_string() << "\n";
    return 2;
  }
  ::setenv("EEP_KEYS_DIR", dir.c_str(), 1);
  const int result = Catch::Session().run(argc, argv);
  std::error_code ec;
  std::filesystem::remove_all(std::filesystem::path(dir).parent_path(), ec);
  return result;
}
