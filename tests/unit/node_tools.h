// Node.js in the tests: running a node (or npm) command with a time limit, and installing the npm
// packages of a folder of tests/clients/ (clients and oracles nobody here wrote) into a folder of
// the machine's temporary directory, once per machine. Used by the unit tests of the HTTP
// clients, the tokenizer and the chat templates, and by the integration test of the text API.
#pragma once

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "eep/common/subprocess.h"

namespace eep::testing::node {

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

struct Output {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Runs argv with its output in `log`; FAILs when it does not finish within `timeout`.
inline Output run(const std::vector<std::string>& argv, const std::filesystem::path& log,
                  std::chrono::seconds timeout) {
  std::filesystem::remove(log);
  auto child = ChildProcess::spawn(argv, {{}, log.string(), true});
  REQUIRE(child.is_ok());
  if (!child->wait_for(timeout)) {
    child->stop(std::chrono::milliseconds(100));
    FAIL(argv[0] << " did not finish within " << timeout.count() << " s: " << read_file(log));
  }
  const int status = *child->wait_status();
  Output result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.output = read_file(log);
  return result;
}

// An exclusive flock on a file, released when the last copy goes.
struct FileLock {
  int fd = -1;
  ~FileLock() {
    if (fd >= 0) ::close(fd);
  }
};

// A folder with a package.json, its scripts and their node_modules.
struct Packages {
  std::filesystem::path dir;
  std::string node;      // the node binary
  bool changed = false;  // a file of the source folder differed from the installed copy
  // Held while the caller keeps this value: files it makes from the packages (an oracle's
  // answers) are written before another test process looks at the folder.
  std::shared_ptr<FileLock> lock = std::make_shared<FileLock>();
};

// Copies `files` (package.json first) of `source_dir` into the temporary folder `temp_name` and
// runs `npm install` there when one of them changed or one of `packages` (names under
// node_modules) is missing, under the folder's lock, so that test processes running at once share
// one install. FAILs naming `what` when node or npm is missing or the install fails.
inline Packages install_packages(const std::filesystem::path& source_dir,
                                 const std::string& temp_name,
                                 const std::vector<std::string>& files,
                                 const std::vector<std::string>& packages, const std::string& what,
                                 std::chrono::seconds timeout) {
  namespace fs = std::filesystem;
  auto node = find_in_path("node");
  auto npm = find_in_path("npm");
  if (!node || !npm) FAIL("this test needs Node.js (>= 18) and npm to run " << what);
  Packages result;
  result.node = *node;
  result.dir = fs::temp_directory_path() / temp_name;
  fs::create_directories(result.dir);
  result.lock->fd = ::open((result.dir / ".lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  REQUIRE(result.lock->fd >= 0);
  REQUIRE(::flock(result.lock->fd, LOCK_EX) == 0);
  for (const std::string& name : files) {
    const std::string source = read_file(source_dir / name);
    REQUIRE(!source.empty());
    if (read_file(result.dir / name) != source) {
      std::ofstream(result.dir / name, std::ios::binary) << source;
      result.changed = true;
    }
  }
  bool missing = false;
  for (const std::string& package : packages) {
    missing = missing || !fs::exists(result.dir / "node_modules" / package / "package.json");
  }
  if (result.changed || missing) {
    Output install = run({*npm, "install", "--prefix", result.dir.string(), "--no-audit",
                          "--no-fund", "--loglevel=error"},
                         result.dir / "npm.log", timeout);
    if (install.exit_code != 0) {
      FAIL("npm could not install " << what << " from the npm registry (is it reachable from "
                                    << "this machine?):\n"
                                    << install.output);
    }
  }
  return result;
}

}  // namespace eep::testing::node
