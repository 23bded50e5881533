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

// The directory `name` in the process's scratch directory, empty (what a test made there before
// is removed).
inline std::filesystem::path fresh_scratch_dir(const std::string& prefix, const std::string& name) {
  const std::filesystem::path dir = process_scratch_dir(prefix) / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace eep::testing
