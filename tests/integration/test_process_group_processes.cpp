// Four eep_pg_peer processes form one Gloo group over loopback (rank 0 serves the store), run
// uneven all-to-alls and check the results themselves; here we check that all of them say so.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "eep/common/subprocess.h"
#include "fleet.h"

using eep::testing::read_file;

TEST_CASE("process group: 4 processes all-to-all over loopback", "[pg]") {
  constexpr int kSize = 4;
  const std::string peer = std::string(EEP_BIN_DIR) + "/eep_pg_peer";
  REQUIRE(std::filesystem::exists(peer));
  const auto dir =
      std::filesystem::temp_directory_path() / ("eep_pg_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string port_file = (dir / "store_port").string();

  std::vector<eep::ChildProcess> ranks;
  auto spawn = [&](int rank, const std::vector<std::string>& extra) {
    std::vector<std::string> argv{peer, "--rank", std::to_string(rank), "--size",
                                  std::to_string(kSize)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    eep::SpawnOptions options;
    options.log_path = (dir / ("rank" + std::to_string(rank) + ".log")).string();
    auto child = eep::ChildProcess::spawn(argv, options);
    REQUIRE(child.is_ok());
    ranks.push_back(std::move(child).value());
  };

  spawn(0, {"--store-port", "0", "--port-file", port_file});
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!std::filesystem::exists(port_file) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  REQUIRE(std::filesystem::exists(port_file));
  const std::string port = std::to_string(std::stoi(read_file(port_file)));
  for (int rank = 1; rank < kSize; ++rank) spawn(rank, {"--store-port", port});

  std::string checksum_line;
  for (int rank = 0; rank < kSize; ++rank) {
    REQUIRE(ranks[rank].wait_for(std::chrono::seconds(60)));
    const std::string log = read_file((dir / ("rank" + std::to_string(rank) + ".log")).string());
    INFO("rank " << rank << " log:\n" << log);
    CHECK(ranks[rank].describe_exit() == "exited with 0");
    const auto at = log.find("ok checksum ");
    REQUIRE(at != std::string::npos);
    // Every rank printed the same all-reduced checksum.
    const std::string line = log.substr(at, log.find('\n', at) - at);
    if (rank == 0) checksum_line = line;
    CHECK(line == checksum_line);
  }
  std::filesystem::remove_all(dir);
}
