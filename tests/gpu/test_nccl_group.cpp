// The NCCL ProcessGroup (worker/include/eep/worker/cuda/process_group_nccl.h): a group of one
// rank in this process, and fleets of eep_nccl_peer processes (one per GPU) that run every
// operation and check the results themselves (tests/helpers/nccl_peer_main.cpp); here we serve
// their store, start them and check that all of them say PASS. Tests that need more GPUs than
// this machine has say so with a "SKIPPED" warning instead of passing silently.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../helpers/pending_process_group.h"
#include "eep/common/subprocess.h"
#include "eep/worker/comm/kv_store.h"
#include "eep/worker/comm/process_group_nccl.h"
#include "gpu_test_util.h"

namespace {

using eep::ErrorCode;
using eep::gpu_test::DeviceBuffer;
using namespace eep::worker;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

int num_gpus() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The lines of a peer's log that report a failed check.
std::string fail_lines(const std::string& log) {
  std::string lines;
  size_t at = 0;
  while (at < log.size()) {
    size_t end = log.find('\n', at);
    if (end == std::string::npos) end = log.size();
    if (log.compare(at, 5, "FAIL ") == 0) lines += log.substr(at, end - at) + "\n";
    at = end + 1;
  }
  return lines;
}

// The lines of a peer's log that hold measurements (cycle footprint, enqueue latency, times),
// shown even when the test passes: one GPU run should answer how well it went, not only whether.
std::string measurement_lines(const std::string& log) {
  static const char* const kMarkers[] = {"cycles in", "us on the host", "while gen 2 was built",
                                         "survivor:"};
  std::string lines;
  size_t at = 0;
  while (at < log.size()) {
    size_t end = log.find('\n', at);
    if (end == std::string::npos) end = log.size();
    const std::string line = log.substr(at, end - at);
    for (const char* marker : kMarkers) {
      if (line.find(marker) != std::string::npos) {
        lines += line + "\n";
        break;
      }
    }
    at = end + 1;
  }
  return lines;
}

// NVLink multicast can take a shared host's GPUs out of service: off in this process (before
// NCCL reads it) and in every process started from here.
void nvls_off() {
  ::setenv("NCCL_NVLS_ENABLE", "0", 1);
}

std::unique_ptr<StoreServer> start_store() {
  auto server = StoreServer::start("127.0.0.1", 0);
  REQUIRE(server.is_ok());
  return std::move(server).value();
}

GroupSpec solo_spec(int store_port, uint64_t generation) {
  GroupSpec spec;
  spec.generation = generation;
  spec.name = "solo";
  spec.rank = 0;
  spec.size = 1;
  spec.store_port = store_port;
  spec.timeout = std::chrono::seconds(20);
  return spec;
}

// Peers of one fleet, their logs in a scratch directory, and the store they rendezvous at.
class NcclPeers {
 public:
  NcclPeers(int num_ranks, const std::vector<std::string>& extra_args) : num_ranks_(num_ranks) {
    nvls_off();
    dir_ = fs::temp_directory_path() /
           ("eep_nccl_" + std::to_string(::getpid()) + "_" + std::to_string(next_id_++));
    fs::create_directories(dir_);
    store_ = start_store();
    // $EEP_BIN_DIR overrides the path compiled in (binaries built on one machine, run on another).
    const char* bin_dir = std::getenv("EEP_BIN_DIR");
    const std::string binary =
        std::string(bin_dir != nullptr ? bin_dir : EEP_BIN_DIR) + "/eep_nccl_peer";
    INFO("peer binary " << binary);
    REQUIRE(fs::exists(binary));
    for (int rank = 0; rank < num_ranks; ++rank) {
      std::vector<std::string> argv{binary,
                                    "--rank",
                                    std::to_string(rank),
                                    "--size",
                                    std::to_string(num_ranks),
                                    "--store-port",
                                    std::to_string(store_->port())};
      argv.insert(argv.end(), extra_args.begin(), extra_args.end());
      eep::SpawnOptions options;
      options.env["NCCL_NVLS_ENABLE"] = "0";
      // NCCL's own warnings in the peers' logs, so one failed run tells what went wrong.
      const char* debug = std::getenv("NCCL_DEBUG");
      options.env["NCCL_DEBUG"] = debug != nullptr ? debug : "WARN";
      options.log_path = log_path(rank).string();
      auto child = eep::ChildProcess::spawn(argv, options);
      REQUIRE(child.is_ok());
      peers_.push_back(std::move(child).value());
    }
  }
  ~NcclPeers() {
    for (auto& peer : peers_) {
      if (peer.valid() && peer.running()) peer.stop(std::chrono::seconds(2));
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  fs::path log_path(int rank) const { return dir_ / ("rank" + std::to_string(rank) + ".log"); }
  std::string log(int rank) const { return read_file(log_path(rank)); }
  eep::ChildProcess& peer(int rank) { return peers_[rank]; }
  int num_ranks() const { return num_ranks_; }

  // Waits until rank's log holds `text` or the rank exits; true when the text came.
  bool wait_for_line(int rank, const std::string& text, std::chrono::seconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (log(rank).find(text) != std::string::npos) return true;
      if (!peers_[rank].running()) return log(rank).find(text) != std::string::npos;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

 private:
  static inline int next_id_ = 0;
  int num_ranks_;
  fs::path dir_;
  std::unique_ptr<StoreServer> store_;
  std::vector<eep::ChildProcess> peers_;
};

void run_fleet(int num_ranks) {
  const int available = num_gpus();
  if (available < num_ranks) {
    WARN("SKIPPED: needs " << num_ranks << " GPUs, this machine has " << available);
    return;
  }
  NcclPeers fleet(num_ranks, {"--mode", "all"});
  // Each rank: every operation, a captured exchange, a second generation and 20 cycles of about
  // a second each.
  for (int rank = 0; rank < num_ranks; ++rank) {
    const bool exited = fleet.peer(rank).wait_for(std::chrono::seconds(300));
    INFO("rank " << rank << " of " << num_ranks << " log:\n" << fleet.log(rank));
    REQUIRE(exited);
    CHECK(fleet.peer(rank).describe_exit() == "exited with 0");
    CHECK(fail_lines(fleet.log(rank)).empty());
    CHECK(fleet.log(rank).find("PASS all") != std::string::npos);
    if (rank == 0)
      WARN(num_ranks << " ranks, rank 0 measured:\n" << measurement_lines(fleet.log(0)));
  }
}

}  // namespace

TEST_CASE("nccl group: a group of one rank runs every operation in this process", "[gpu][nccl]") {
  nvls_off();
  auto store = start_store();
  // A blocking stream, so the legacy-stream copies of DeviceBuffer are ordered with the group.
  cudaStream_t user_stream = nullptr;
  EEP_REQUIRE_CUDA(cudaStreamCreate(&user_stream));
  auto built = create_nccl_group(solo_spec(store->port(), 1), NcclGroupOptions{0, user_stream});
  INFO(built.status().to_string());
  REQUIRE(built.is_ok());
  auto* group = dynamic_cast<NcclProcessGroup*>(built->get());
  REQUIRE(group != nullptr);
  CHECK(group->stream() == user_stream);
  CHECK(group->comm() != nullptr);
  CHECK(group->rank() == 0);
  CHECK(group->size() == 1);
  CHECK(group->usable());
  const auto timeout = std::chrono::seconds(10);

  SECTION("all_to_all_v moves this rank's own block, or nothing") {
    std::vector<uint8_t> data(5003);
    for (size_t idx = 0; idx < data.size(); ++idx) data[idx] = static_cast<uint8_t>(idx * 7 + 1);
    DeviceBuffer<uint8_t> send(data), recv(data.size());
    recv.poison();
    const size_t num_bytes = data.size();
    REQUIRE(group->all_to_all_v(send.data(), &num_bytes, recv.data(), &num_bytes).is_ok());
    REQUIRE(group->synchronize(timeout).is_ok());
    CHECK(recv.download() == data);
    const size_t zero = 0;
    CHECK(group->all_to_all_v(send.data(), &zero, recv.data(), &zero).is_ok());
    const size_t other = 1;
    CHECK(group->all_to_all_v(send.data(), &num_bytes, recv.data(), &other).code() ==
          ErrorCode::kInvalidArgument);
  }
  SECTION("all_reduce of one rank leaves the values") {
    const std::vector<float> floats = eep::gpu_test::random_floats(1001, 7);
    DeviceBuffer<float> f(floats);
    REQUIRE(group->all_reduce(f.data(), floats.size(), ReduceOp::kSum).is_ok());
    CHECK(f.download() == floats);
    std::vector<int64_t> ints(333);
    for (size_t idx = 0; idx < ints.size(); ++idx) {
      ints[idx] = (int64_t{1} << 40) * (idx % 2 == 0 ? 1 : -1) + static_cast<int64_t>(idx);
    }
    DeviceBuffer<int64_t> i(ints);
    REQUIRE(group->all_reduce(i.data(), ints.size(), ReduceOp::kMax).is_ok());
    REQUIRE(group->all_reduce(i.data(), ints.size(), ReduceOp::kMin).is_ok());
    CHECK(i.download() == ints);
    CHECK(group->all_reduce(i.data(), 0, ReduceOp::kSum).is_ok());
  }
  SECTION("all_gather and broadcast") {
    std::vector<uint8_t> data(777);
    for (size_t idx = 0; idx < data.size(); ++idx) data[idx] = static_cast<uint8_t>(idx * 3 + 5);
    DeviceBuffer<uint8_t> send(data), recv(data.size());
    recv.poison();
    REQUIRE(group->all_gather(send.data(), data.size(), recv.data()).is_ok());
    CHECK(recv.download() == data);
    REQUIRE(group->all_gather(recv.data(), data.size(), recv.data()).is_ok());  // in place
    CHECK(recv.download() == data);
    REQUIRE(group->broadcast(recv.data(), data.size(), 0).is_ok());
    CHECK(recv.download() == data);
    CHECK(group->broadcast(recv.data(), data.size(), 1).code() == ErrorCode::kInvalidArgument);
  }
  SECTION("send and recv have no peer to talk to") {
    DeviceBuffer<uint8_t> buffer(16);
    CHECK(group->send(buffer.data(), 16, 0, 0).code() == ErrorCode::kInvalidArgument);
    CHECK(group->recv(buffer.data(), 16, 1, 0).code() == ErrorCode::kInvalidArgument);
    CHECK(group->usable());  // a refused argument does not break the group
  }
  SECTION("a captured all_to_all_v replays") {
    std::vector<uint8_t> data(4096);
    for (size_t idx = 0; idx < data.size(); ++idx) data[idx] = static_cast<uint8_t>(idx);
    DeviceBuffer<uint8_t> send(data), recv(data.size());
    const size_t num_bytes = data.size();
    REQUIRE(group->all_to_all_v(send.data(), &num_bytes, recv.data(), &num_bytes).is_ok());
    REQUIRE(group->synchronize(timeout).is_ok());
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    EEP_REQUIRE_CUDA(cudaStreamBeginCapture(user_stream, cudaStreamCaptureModeThreadLocal));
    const eep::Status captured =
        group->all_to_all_v(send.data(), &num_bytes, recv.data(), &num_bytes);
    const cudaError_t ended = cudaStreamEndCapture(user_stream, &graph);
    INFO(captured.to_string());
    REQUIRE(captured.is_ok());
    EEP_REQUIRE_CUDA(ended);
    EEP_REQUIRE_CUDA(cudaGraphInstantiate(&exec, graph, 0));
    for (int round = 1; round <= 3; ++round) {
      for (size_t idx = 0; idx < data.size(); ++idx) {
        data[idx] = static_cast<uint8_t>(idx * round + 11);
      }
      send.upload(data);
      recv.poison();
      EEP_REQUIRE_CUDA(cudaGraphLaunch(exec, user_stream));
      REQUIRE(group->synchronize(timeout).is_ok());
      CHECK(recv.download() == data);
    }
    // Before the group goes: NCCL's teardown waits for every graph that holds its work.
    EEP_REQUIRE_CUDA(cudaGraphExecDestroy(exec));
    EEP_REQUIRE_CUDA(cudaGraphDestroy(graph));
  }

  REQUIRE(group->barrier().is_ok());
  REQUIRE(group->synchronize(timeout).is_ok());
  group->destroy();
  CHECK_FALSE(group->usable());
  CHECK(group->comm() == nullptr);
  CHECK(group->barrier().code() == ErrorCode::kFailedPrecondition);
  CHECK(group->synchronize(timeout).code() == ErrorCode::kFailedPrecondition);
  group->destroy();  // idempotent
  built->reset();    // the destructor after destroy() does nothing more
  EEP_REQUIRE_CUDA(cudaStreamDestroy(user_stream));
}

TEST_CASE("nccl group: built on a helper thread with a stream of its own", "[gpu][nccl]") {
  nvls_off();
  auto store = start_store();
  PendingProcessGroup pending = build_in_background(
      [spec = solo_spec(store->port(), 2)] { return create_nccl_group(spec, {}); });
  auto built = pending.wait();
  INFO(built.status().to_string());
  REQUIRE(built.is_ok());
  auto& group = dynamic_cast<NcclProcessGroup&>(**built);
  CHECK(group.stream() != nullptr);
  DeviceBuffer<float> data(std::vector<float>(64, 2.0f));
  // The upload ran on the legacy stream, which the group's non-blocking stream does not wait for.
  EEP_REQUIRE_CUDA(cudaDeviceSynchronize());
  REQUIRE(group.all_reduce(data.data(), 64, ReduceOp::kMax).is_ok());
  REQUIRE(group.barrier().is_ok());
  CHECK(data.download() == std::vector<float>(64, 2.0f));
  // Dropped without destroy(): the destructor destroys.
}

TEST_CASE("nccl group: wrong arguments and a missing rank 0 are errors in bounded time",
          "[gpu][nccl]") {
  nvls_off();
  auto store = start_store();
  GroupSpec spec = solo_spec(store->port(), 7);
  auto bad_device = create_nccl_group(spec, NcclGroupOptions{num_gpus(), nullptr});
  CHECK(bad_device.status().code() == ErrorCode::kInvalidArgument);
  spec.rank = 1;
  CHECK(create_nccl_group(spec, {}).status().code() == ErrorCode::kInvalidArgument);

  // Rank 1 of 2 with nobody publishing the unique id.
  spec.size = 2;
  spec.timeout = std::chrono::milliseconds(1500);
  const auto started = Clock::now();
  auto missing = create_nccl_group(spec, {});
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  INFO(missing.status().to_string() << " after " << seconds << " s");
  CHECK(missing.status().code() == ErrorCode::kDeadlineExceeded);
  CHECK(missing.status().message().find("generation 7") != std::string::npos);
  CHECK(missing.status().message().find("solo") != std::string::npos);
  CHECK(seconds < 5.0);
}

TEST_CASE("nccl group: 2 processes run every operation", "[gpu][nccl]") {
  run_fleet(2);
}

TEST_CASE("nccl group: 4 processes run every operation", "[gpu][nccl]") {
  run_fleet(4);
}

TEST_CASE("nccl group: a killed peer turns into an error, not a hang", "[gpu][nccl]") {
  const int available = num_gpus();
  if (available < 2) {
    WARN("SKIPPED: needs 2 GPUs, this machine has " << available);
    return;
  }
  // Short timeout: the survivor must report the dead peer within about this long.
  NcclPeers fleet(2, {"--mode", "kill", "--timeout-ms", "5000"});
  const bool ready = fleet.wait_for_line(1, "READY", std::chrono::seconds(60));
  INFO("rank 0 log:\n" << fleet.log(0));
  INFO("rank 1 log:\n" << fleet.log(1));
  REQUIRE(ready);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // both mid-loop
  fleet.peer(1).signal(SIGKILL);
  REQUIRE(fleet.peer(1).wait_for(std::chrono::seconds(10)));
  const auto killed = Clock::now();
  const bool exited = fleet.peer(0).wait_for(std::chrono::seconds(60));
  const double seconds = std::chrono::duration<double>(Clock::now() - killed).count();
  INFO("survivor exited " << seconds << " s after the kill; its log:\n" << fleet.log(0));
  REQUIRE(exited);
  CHECK(fleet.peer(0).describe_exit() == "exited with 0");
  CHECK(fail_lines(fleet.log(0)).empty());
  CHECK(fleet.log(0).find("PASS kill: the error came within the timeout") != std::string::npos);
  CHECK(fleet.log(0).find("PASS all") != std::string::npos);
  WARN("kill test, " << seconds << " s from the kill to the survivor's exit:\n"
                     << measurement_lines(fleet.log(0)));
}

TEST_CASE("nccl group: rank 0 alone gives up on its peers and aborts the communicator",
          "[gpu][nccl]") {
  // Last in this file: should NCCL not honour the abort while it waits for the missing rank,
  // this hangs, and the other tests of this file have run by then.
  nvls_off();
  auto store = start_store();
  GroupSpec spec = solo_spec(store->port(), 8);
  spec.size = 2;  // rank 1 never comes
  spec.timeout = std::chrono::seconds(2);
  const auto started = Clock::now();
  auto alone = create_nccl_group(spec, {});
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  INFO(alone.status().to_string() << " after " << seconds << " s");
  CHECK(alone.status().code() == ErrorCode::kDeadlineExceeded);
  CHECK(alone.status().message().find("generation 8") != std::string::npos);
  CHECK(seconds < 15.0);
}
