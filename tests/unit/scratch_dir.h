// A per-process scratch directory for unit tests under the system temp dir, removed when the test
// process exits (each ctest test is its own process, so leftovers would pile up otherwise).
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

namespace eep::testing {

inline const std::filesystem::path& process_scratch_dir(const std::string& prefix) {
  struct Dir {
    std::filesystem::path path;
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static Dir dir{std::filesystem::temp_directory_path() /
                 (prefix + "_" + std::to_string(::getpid()))};
  std::filesystem::create_directories(dir.path);
  return dir.path;
}

}  // namespace eep::testing
