// The fleet's CURVE keys of a test process, for the mains of the integration and hosts tests:
// every process a test starts (coordinators, workers, eepctl, eep-bench) finds them in one
// directory of this process (EEP_KEYS_DIR, inherited), made before the tests and removed after,
// so the tests run with the control plane's default: CURVE on.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

#include "eep/common/fleet_keys.h"

namespace eep::testing {

// Makes the keys, runs `run_tests` with EEP_KEYS_DIR naming them, removes them; returns what
// `run_tests` returned, or 2 when the keys cannot be made.
template <typename RunTests>
int run_with_fleet_keys(RunTests run_tests) {
  std::string pattern = (std::filesystem::temp_directory_path() / "eep-test-keys-XXXXXX").string();
  const std::string dir = ::mkdtemp(pattern.data()) + std::string("/keys");
  auto made = ensure_fleet_keys(dir);
  if (!made.is_ok()) {
    std::cerr << "cannot make the test fleet's keys: " << made.status().to_string() << "\n";
    return 2;
  }
  ::setenv("EEP_KEYS_DIR", dir.c_str(), 1);
  const int result = run_tests();
  std::error_code ec;
  std::filesystem::remove_all(std::filesystem::path(dir).parent_path(), ec);
  return result;
}

}  // namespace eep::testing
