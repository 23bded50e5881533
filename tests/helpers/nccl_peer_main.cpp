// eep_nccl_peer: one rank of an NCCL process group as its own process, on GPU rank % (number of
// GPUs), for the GPU test tests/gpu/test_nccl_group.cpp (which serves the store and starts one
// peer per rank). Every rank runs the same script of operations, checks the results itself and
// prints one "PASS <what>" or "FAIL <what>: <why>" line per check, then "PASS all" and exit 0
// when every check passed (exit 1 otherwise).
//
// --mode all: every operation, a captured all_to_all_v, building generation 2 while generation 1
//   carries traffic, 20 create/destroy cycles with memory, thread and fd counts.
// --mode kill: all-reduces in a loop; rank 1 prints READY once the group works and is then
//   SIGKILLed by the test; rank 0 must see an error within the group's timeout, destroy the
//   group and exit 0.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <cuda_runtime.h>
#include <CLI/CLI.hpp>

#include "eep/common/log.h"
#include "eep/worker/comm/process_group_nccl.h"
#include "pending_process_group.h"

namespace {

using eep::ErrorCode;
using eep::Status;
using namespace eep::worker;
using Clock = std::chrono::steady_clock;

int g_num_failures = 0;

void report(bool ok, const std::string& what, const std::string& why = "") {
  if (ok) {
    std::cout << "PASS " << what << std::endl;
  } else {
    std::cout << "FAIL " << what << ": " << why << std::endl;
    ++g_num_failures;
  }
}

// True when status is ok; otherwise reports the failure of `what`.
bool ok_or_report(const Status& status, const std::string& what) {
  if (!status.is_ok()) report(false, what, status.to_string());
  return status.is_ok();
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Device bytes, freed on destruction; at least one byte so that empty blocks have an address.
class DeviceBytes {
 public:
  explicit DeviceBytes(size_t num_bytes) : num_bytes_(num_bytes) {
    if (cudaMalloc(&data_, std::max<size_t>(num_bytes, 1)) != cudaSuccess) data_ = nullptr;
  }
  ~DeviceBytes() {
    if (data_ != nullptr) cudaFree(data_);
  }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  char* data() { return static_cast<char*>(data_); }
  size_t size() const { return num_bytes_; }
  bool valid() const { return data_ != nullptr; }

 private:
  void* data_ = nullptr;
  size_t num_bytes_;
};

// Host <-> device copies on the group's stream, each waited for within `timeout`: the stream is
// idle (all earlier work done) before a copy is enqueued, so a pageable copy never blocks on a
// stuck stream.
class Transfer {
 public:
  Transfer(NcclProcessGroup& group, std::chrono::milliseconds timeout)
      : group_(group), timeout_(timeout) {}

  Status upload(void* device, const void* host, size_t num_bytes) {
    EEP_RETURN_IF_ERROR(group_.synchronize(timeout_));
    if (num_bytes > 0) {
      const cudaError_t err =
          cudaMemcpyAsync(device, host, num_bytes, cudaMemcpyHostToDevice, group_.stream());
      if (err != cudaSuccess) return cuda_error("upload", err);
    }
    return group_.synchronize(timeout_);
  }
  Status download(void* host, const void* device, size_t num_bytes) {
    EEP_RETURN_IF_ERROR(group_.synchronize(timeout_));
    if (num_bytes > 0) {
      const cudaError_t err =
          cudaMemcpyAsync(host, device, num_bytes, cudaMemcpyDeviceToHost, group_.stream());
      if (err != cudaSuccess) return cuda_error("download", err);
    }
    return group_.synchronize(timeout_);
  }
  // 0xFF everywhere: what an operation forgot to write shows in the comparison.
  Status poison(void* device, size_t num_bytes) {
    if (num_bytes == 0) return Status::ok();
    const cudaError_t err = cudaMemsetAsync(device, 0xFF, num_bytes, group_.stream());
    return err == cudaSuccess ? Status::ok() : cuda_error("poison", err);
  }

 private:
  static Status cuda_error(const char* what, cudaError_t err) {
    return eep::error(ErrorCode::kInternal, std::string(what) + ": " + cudaGetErrorString(err));
  }
  NcclProcessGroup& group_;
  std::chrono::milliseconds timeout_;
};

// "" when equal, else where the first difference is.
template <typename T>
std::string first_mismatch(const std::vector<T>& actual, const std::vector<T>& expected) {
  if (actual.size() != expected.size()) {
    return "size " + std::to_string(actual.size()) + " != " + std::to_string(expected.size());
  }
  for (size_t idx = 0; idx < actual.size(); ++idx) {
    if (!(actual[idx] == expected[idx])) {
      return "first mismatch at element " + std::to_string(idx) + " of " +
             std::to_string(actual.size()) + ": got " + std::to_string(+actual[idx]) +
             ", expected " + std::to_string(+expected[idx]);
    }
  }
  return "";
}

struct Peer {
  int rank = 0;
  int size = 0;
  int device = 0;
  int store_port = 0;
  std::chrono::milliseconds timeout{20000};

  GroupSpec spec(uint64_t generation, const std::string& name) const {
    GroupSpec spec;
    spec.generation = generation;
    spec.name = name;
    spec.rank = rank;
    spec.size = size;
    spec.store_port = store_port;
    spec.timeout = timeout;
    spec.collective_timeout = timeout;
    return spec;
  }
  NcclGroupOptions options() const { return NcclGroupOptions{device, nullptr}; }
};

std::unique_ptr<ProcessGroup> create(const Peer& peer, uint64_t generation,
                                     const std::string& name) {
  auto built = create_nccl_group(peer.spec(generation, name), peer.options());
  if (!built.is_ok()) {
    report(false, "create " + name + " gen " + std::to_string(generation),
           built.status().to_string());
    return nullptr;
  }
  return std::move(built).value();
}

NcclProcessGroup& nccl(ProcessGroup& group) {
  return dynamic_cast<NcclProcessGroup&>(group);
}

// ---- all_to_all_v -------------------------------------------------------------------------

// Bytes rank `from` sends rank `to` in `round`: uneven, some zero (self included), some odd.
size_t block_bytes(int from, int to, int round) {
  const int k = (from * 5 + to * 3 + round) % 4;
  return k == 0 ? 0
                : static_cast<size_t>(k) * 1000 + static_cast<size_t>((from + 2 * to + round) % 7);
}
unsigned char block_byte(int from, int to, int round, size_t idx) {
  return static_cast<unsigned char>(from * 37 + to * 11 + round * 7 + idx * 13);
}

// Runs one all_to_all_v of the sizes `bytes(from, to)` and contents `byte(from, to, idx)` and
// checks what this rank received; true when right (a FAIL line otherwise).
template <typename Bytes, typename Byte>
bool exchange_and_check(const Peer& peer, NcclProcessGroup& group, const std::string& what,
                        Bytes bytes, Byte byte) {
  Transfer transfer(group, peer.timeout);
  std::vector<size_t> send_bytes(peer.size), recv_bytes(peer.size);
  size_t total_send = 0, total_recv = 0;
  for (int other = 0; other < peer.size; ++other) {
    send_bytes[other] = bytes(peer.rank, other);
    recv_bytes[other] = bytes(other, peer.rank);
    total_send += send_bytes[other];
    total_recv += recv_bytes[other];
  }
  std::vector<unsigned char> send(total_send), expected(total_recv);
  size_t send_at = 0, recv_at = 0;
  for (int other = 0; other < peer.size; ++other) {
    for (size_t idx = 0; idx < send_bytes[other]; ++idx) {
      send[send_at + idx] = byte(peer.rank, other, idx);
    }
    for (size_t idx = 0; idx < recv_bytes[other]; ++idx) {
      expected[recv_at + idx] = byte(other, peer.rank, idx);
    }
    send_at += send_bytes[other];
    recv_at += recv_bytes[other];
  }
  DeviceBytes send_dev(total_send), recv_dev(total_recv);
  if (!send_dev.valid() || !recv_dev.valid()) {
    report(false, what, "cudaMalloc failed");
    return false;
  }
  if (!ok_or_report(transfer.upload(send_dev.data(), send.data(), total_send), what)) return false;
  if (!ok_or_report(transfer.poison(recv_dev.data(), total_recv), what)) return false;
  if (!ok_or_report(group.all_to_all_v(send_dev.data(), send_bytes.data(), recv_dev.data(),
                                       recv_bytes.data()),
                    what)) {
    return false;
  }
  std::vector<unsigned char> recv(total_recv);
  if (!ok_or_report(transfer.download(recv.data(), recv_dev.data(), total_recv), what))
    return false;
  const std::string mismatch = first_mismatch(recv, expected);
  report(mismatch.empty(), what, mismatch);
  return mismatch.empty();
}

void test_all_to_all_v(const Peer& peer, NcclProcessGroup& group) {
  for (int round = 0; round < 4; ++round) {
    exchange_and_check(
        peer, group, "all_to_all_v uneven round " + std::to_string(round),
        [round](int from, int to) { return block_bytes(from, to, round); },
        [round](int from, int to, size_t idx) { return block_byte(from, to, round, idx); });
  }
  // Nothing at all to exchange.
  exchange_and_check(
      peer, group, "all_to_all_v all empty", [](int, int) { return size_t{0}; },
      [](int, int, size_t) { return static_cast<unsigned char>(0); });
}

// ---- all_reduce -----------------------------------------------------------------------------

template <typename T>
void check_all_reduce(const Peer& peer, NcclProcessGroup& group, const std::string& what,
                      ReduceOp op, T (*value)(int rank, size_t idx), size_t num_elements) {
  Transfer transfer(group, peer.timeout);
  std::vector<T> mine(num_elements), expected(num_elements);
  for (size_t idx = 0; idx < num_elements; ++idx) {
    mine[idx] = value(peer.rank, idx);
    T acc = value(0, idx);
    for (int other = 1; other < peer.size; ++other) {
      const T x = value(other, idx);
      acc = op == ReduceOp::kSum   ? acc + x
            : op == ReduceOp::kMax ? std::max(acc, x)
                                   : std::min(acc, x);
    }
    expected[idx] = acc;
  }
  DeviceBytes data(num_elements * sizeof(T));
  if (!ok_or_report(transfer.upload(data.data(), mine.data(), data.size()), what)) return;
  if (!ok_or_report(group.all_reduce(reinterpret_cast<T*>(data.data()), num_elements, op), what)) {
    return;
  }
  std::vector<T> result(num_elements);
  if (!ok_or_report(transfer.download(result.data(), data.data(), data.size()), what)) return;
  const std::string mismatch = first_mismatch(result, expected);
  report(mismatch.empty(), what, mismatch);
}

// Small integers in floats: every sum is exact, so results compare with ==.
float float_value(int rank, size_t idx) {
  return static_cast<float>((rank + 1) * (static_cast<int>(idx % 13) - 6));
}
// Beyond 32 bits and of both signs, so a reduction done in the wrong width shows.
int64_t int64_value(int rank, size_t idx) {
  const int64_t sign = (idx + static_cast<size_t>(rank)) % 3 == 0 ? -1 : 1;
  return sign * ((int64_t{rank + 1} << 34) + static_cast<int64_t>(idx));
}

void test_all_reduce(const Peer& peer, NcclProcessGroup& group) {
  constexpr size_t kNumElements = 1017;
  check_all_reduce<float>(peer, group, "all_reduce float sum", ReduceOp::kSum, float_value,
                          kNumElements);
  check_all_reduce<float>(peer, group, "all_reduce float max", ReduceOp::kMax, float_value,
                          kNumElements);
  check_all_reduce<float>(peer, group, "all_reduce float min", ReduceOp::kMin, float_value,
                          kNumElements);
  check_all_reduce<int64_t>(peer, group, "all_reduce int64 sum", ReduceOp::kSum, int64_value,
                            kNumElements);
  check_all_reduce<int64_t>(peer, group, "all_reduce int64 max", ReduceOp::kMax, int64_value,
                            kNumElements);
  check_all_reduce<int64_t>(peer, group, "all_reduce int64 min", ReduceOp::kMin, int64_value, 1);
}

// ---- all_gather, broadcast ------------------------------------------------------------------

unsigned char gather_byte(int rank, size_t idx) {
  return static_cast<unsigned char>(rank * 53 + idx * 7 + 1);
}

void test_all_gather(const Peer& peer, NcclProcessGroup& group) {
  constexpr size_t kBlock = 4099;  // odd on purpose
  Transfer transfer(group, peer.timeout);
  std::vector<unsigned char> mine(kBlock), expected(kBlock * peer.size);
  for (size_t idx = 0; idx < kBlock; ++idx) mine[idx] = gather_byte(peer.rank, idx);
  for (int other = 0; other < peer.size; ++other) {
    for (size_t idx = 0; idx < kBlock; ++idx)
      expected[other * kBlock + idx] = gather_byte(other, idx);
  }
  for (const bool in_place : {false, true}) {
    const std::string what = in_place ? "all_gather in place" : "all_gather";
    DeviceBytes send(kBlock), recv(kBlock * peer.size);
    char* my_block = recv.data() + peer.rank * kBlock;
    if (!ok_or_report(transfer.poison(recv.data(), recv.size()), what)) return;
    if (!ok_or_report(transfer.upload(in_place ? my_block : send.data(), mine.data(), kBlock),
                      what)) {
      return;
    }
    if (!ok_or_report(group.all_gather(in_place ? my_block : send.data(), kBlock, recv.data()),
                      what)) {
      return;
    }
    std::vector<unsigned char> result(recv.size());
    if (!ok_or_report(transfer.download(result.data(), recv.data(), recv.size()), what)) return;
    const std::string mismatch = first_mismatch(result, expected);
    report(mismatch.empty(), what, mismatch);
  }
}

void test_broadcast(const Peer& peer, NcclProcessGroup& group) {
  constexpr size_t kBytes = 10007;
  Transfer transfer(group, peer.timeout);
  for (const int root : {0, peer.size - 1}) {
    const std::string what = "broadcast from " + std::to_string(root);
    std::vector<unsigned char> expected(kBytes);
    for (size_t idx = 0; idx < kBytes; ++idx) expected[idx] = gather_byte(root + 100, idx);
    DeviceBytes data(kBytes);
    if (!ok_or_report(transfer.poison(data.data(), kBytes), what)) return;
    if (peer.rank == root &&
        !ok_or_report(transfer.upload(data.data(), expected.data(), kBytes), what)) {
      return;
    }
    if (!ok_or_report(group.broadcast(data.data(), kBytes, root), what)) return;
    std::vector<unsigned char> result(kBytes);
    if (!ok_or_report(transfer.download(result.data(), data.data(), kBytes), what)) return;
    const std::string mismatch = first_mismatch(result, expected);
    report(mismatch.empty(), what, mismatch);
  }
}

// ---- send/recv ------------------------------------------------------------------------------

// Two messages to the next rank of the ring and two from the previous one, in order. Rank 0
// sends first and every other rank receives first, so no pair waits on each other's send.
void test_send_recv(const Peer& peer, NcclProcessGroup& group) {
  const std::string what = "send/recv ring";
  const size_t kSizes[2] = {3001, 129};
  Transfer transfer(group, peer.timeout);
  const int next = (peer.rank + 1) % peer.size;
  const int prev = (peer.rank + peer.size - 1) % peer.size;
  auto content = [](int from, int msg, size_t idx) {
    return static_cast<unsigned char>(from * 19 + msg * 101 + idx * 3);
  };
  DeviceBytes out0(kSizes[0]), out1(kSizes[1]), in0(kSizes[0]), in1(kSizes[1]);
  DeviceBytes* outs[2] = {&out0, &out1};
  DeviceBytes* ins[2] = {&in0, &in1};
  for (int msg = 0; msg < 2; ++msg) {
    std::vector<unsigned char> host(kSizes[msg]);
    for (size_t idx = 0; idx < host.size(); ++idx) host[idx] = content(peer.rank, msg, idx);
    if (!ok_or_report(transfer.upload(outs[msg]->data(), host.data(), host.size()), what)) return;
    if (!ok_or_report(transfer.poison(ins[msg]->data(), kSizes[msg]), what)) return;
  }
  auto send_both = [&] {
    for (int msg = 0; msg < 2; ++msg) {
      if (!ok_or_report(group.send(outs[msg]->data(), kSizes[msg], next, msg), what)) return false;
    }
    return true;
  };
  auto recv_both = [&] {
    for (int msg = 0; msg < 2; ++msg) {
      if (!ok_or_report(group.recv(ins[msg]->data(), kSizes[msg], prev, msg), what)) return false;
    }
    return true;
  };
  const bool enqueued = peer.rank == 0 ? send_both() && recv_both() : recv_both() && send_both();
  if (!enqueued) return;
  for (int msg = 0; msg < 2; ++msg) {
    std::vector<unsigned char> result(kSizes[msg]), expected(kSizes[msg]);
    for (size_t idx = 0; idx < expected.size(); ++idx) expected[idx] = content(prev, msg, idx);
    if (!ok_or_report(transfer.download(result.data(), ins[msg]->data(), kSizes[msg]), what))
      return;
    const std::string mismatch = first_mismatch(result, expected);
    report(mismatch.empty(), what + " message " + std::to_string(msg), mismatch);
  }
  const Status to_self = group.send(out0.data(), 1, peer.rank, 0);
  report(to_self.code() == ErrorCode::kInvalidArgument, "send to self is refused",
         to_self.to_string());
}

// ---- a captured all_to_all_v ----------------------------------------------------------------

size_t graph_bytes(int from, int to) {
  return 4096 + 512 * static_cast<size_t>((from + to) % 3);
}
unsigned char graph_byte(int from, int to, int round, size_t idx) {
  return static_cast<unsigned char>(from * 29 + to * 5 + round * 61 + idx * 17 + 3);
}

void test_graph(const Peer& peer, NcclProcessGroup& group) {
  const std::string what = "captured all_to_all_v";
  // Eagerly first: NCCL connects peers on their first use, which a capture cannot do.
  if (!exchange_and_check(
          peer, group, what + " eager warm-up", graph_bytes,
          [](int from, int to, size_t idx) { return graph_byte(from, to, 0, idx); })) {
    return;
  }
  Transfer transfer(group, peer.timeout);
  std::vector<size_t> send_bytes(peer.size), recv_bytes(peer.size);
  size_t total_send = 0, total_recv = 0;
  for (int other = 0; other < peer.size; ++other) {
    send_bytes[other] = graph_bytes(peer.rank, other);
    recv_bytes[other] = graph_bytes(other, peer.rank);
    total_send += send_bytes[other];
    total_recv += recv_bytes[other];
  }
  DeviceBytes send_dev(total_send), recv_dev(total_recv), eager_dev(total_recv);

  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  cudaError_t err = cudaStreamBeginCapture(group.stream(), cudaStreamCaptureModeThreadLocal);
  if (err != cudaSuccess)
    return report(false, what, std::string("begin capture: ") + cudaGetErrorString(err));
  const Status captured =
      group.all_to_all_v(send_dev.data(), send_bytes.data(), recv_dev.data(), recv_bytes.data());
  err = cudaStreamEndCapture(group.stream(), &graph);  // always ended, even after a failure
  if (!ok_or_report(captured, what + " capture")) return;
  if (err != cudaSuccess)
    return report(false, what, std::string("end capture: ") + cudaGetErrorString(err));
  err = cudaGraphInstantiate(&exec, graph, 0);
  if (err != cudaSuccess) {
    cudaGraphDestroy(graph);
    return report(false, what, std::string("instantiate: ") + cudaGetErrorString(err));
  }
  report(true, what + " capture");

  for (int round = 1; round <= 3; ++round) {
    const std::string replay = what + " replay " + std::to_string(round);
    std::vector<unsigned char> send(total_send), expected(total_recv);
    size_t send_at = 0, recv_at = 0;
    for (int other = 0; other < peer.size; ++other) {
      for (size_t idx = 0; idx < send_bytes[other]; ++idx) {
        send[send_at + idx] = graph_byte(peer.rank, other, round, idx);
      }
      for (size_t idx = 0; idx < recv_bytes[other]; ++idx) {
        expected[recv_at + idx] = graph_byte(other, peer.rank, round, idx);
      }
      send_at += send_bytes[other];
      recv_at += recv_bytes[other];
    }
    if (!ok_or_report(transfer.upload(send_dev.data(), send.data(), total_send), replay)) break;
    if (!ok_or_report(transfer.poison(recv_dev.data(), total_recv), replay)) break;
    err = cudaGraphLaunch(exec, group.stream());
    if (err != cudaSuccess) {
      report(false, replay, std::string("launch: ") + cudaGetErrorString(err));
      break;
    }
    std::vector<unsigned char> from_graph(total_recv), from_eager(total_recv);
    if (!ok_or_report(transfer.download(from_graph.data(), recv_dev.data(), total_recv), replay))
      break;
    // The same exchange eagerly, into another buffer.
    if (!ok_or_report(transfer.poison(eager_dev.data(), total_recv), replay)) break;
    if (!ok_or_report(group.all_to_all_v(send_dev.data(), send_bytes.data(), eager_dev.data(),
                                         recv_bytes.data()),
                      replay + " eager")) {
      break;
    }
    if (!ok_or_report(transfer.download(from_eager.data(), eager_dev.data(), total_recv), replay))
      break;
    const std::string vs_expected = first_mismatch(from_graph, expected);
    report(vs_expected.empty(), replay + " data", vs_expected);
    const std::string vs_eager = first_mismatch(from_graph, from_eager);
    report(vs_eager.empty(), replay + " equals eager", vs_eager);
  }
  // Before the group goes: NCCL's teardown waits for every graph that holds its work.
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

// How long an eager all_to_all_v keeps the host (a non-blocking communicator hands each call to
// a thread of NCCL's and says ncclInProgress until it is enqueued): printed, not checked.
void measure_enqueue_latency(const Peer& peer, NcclProcessGroup& group) {
  constexpr int kNumCalls = 200;
  constexpr size_t kBlock = 8192;
  std::vector<size_t> bytes(peer.size, kBlock);
  DeviceBytes send(kBlock * peer.size), recv(kBlock * peer.size);
  double enqueue_seconds = 0;
  for (int call = 0; call < kNumCalls; ++call) {
    const auto started = Clock::now();
    if (!ok_or_report(group.all_to_all_v(send.data(), bytes.data(), recv.data(), bytes.data()),
                      "enqueue latency")) {
      return;
    }
    enqueue_seconds += seconds_since(started);
    if (!ok_or_report(group.synchronize(peer.timeout), "enqueue latency")) return;
  }
  std::cout << "eager all_to_all_v of " << kBlock
            << " bytes per peer: " << enqueue_seconds / kNumCalls * 1e6
            << " us on the host per call (mean of " << kNumCalls << ")" << std::endl;
}

// ---- generation g+1 built while g serves ----------------------------------------------------

std::unique_ptr<ProcessGroup> test_build_while_serving(const Peer& peer,
                                                       std::unique_ptr<ProcessGroup> current) {
  const std::string what = "build gen 2 while gen 1 serves";
  NcclProcessGroup& g1 = nccl(*current);
  Transfer transfer(g1, peer.timeout);
  PendingProcessGroup pending =
      build_in_background([spec = peer.spec(2, "ep"), options = peer.options()] {
        return create_nccl_group(spec, options);
      });
  std::unique_ptr<ProcessGroup> next;
  std::string build_error;
  constexpr size_t kNumElements = 4096;
  DeviceBytes traffic(kNumElements * sizeof(float));
  DeviceBytes flags(2 * sizeof(int64_t));
  const float expected_sum = static_cast<float>(peer.size * (peer.size + 1) / 2);
  int num_iterations = 0;
  bool traffic_ok = true;
  bool agreed = false;
  const auto started = Clock::now();
  // Lockstep, as the engine does: every iteration all ranks agree (all-reduce on gen 1) whether
  // gen 2 is built everywhere, so every rank runs the same number of gen 1 operations.
  while (true) {
    ++num_iterations;
    std::vector<float> ones(kNumElements, static_cast<float>(peer.rank + 1));
    if (!ok_or_report(transfer.upload(traffic.data(), ones.data(), traffic.size()), what)) break;
    if (!ok_or_report(
            g1.all_reduce(reinterpret_cast<float*>(traffic.data()), kNumElements, ReduceOp::kSum),
            what)) {
      break;
    }
    std::vector<float> sums(kNumElements);
    if (!ok_or_report(transfer.download(sums.data(), traffic.data(), traffic.size()), what)) break;
    for (float sum : sums) traffic_ok = traffic_ok && sum == expected_sum;

    if (next == nullptr && build_error.empty() && pending.ready()) {
      auto built = pending.wait();
      if (built.is_ok()) {
        next = std::move(built).value();
      } else {
        build_error = built.status().to_string();
      }
    }
    int64_t done = (next != nullptr || !build_error.empty()) ? 1 : 0;
    int64_t failed = build_error.empty() ? 0 : 1;
    if (!ok_or_report(transfer.upload(flags.data(), &done, sizeof(done)), what) ||
        !ok_or_report(transfer.upload(flags.data() + sizeof(done), &failed, sizeof(failed)),
                      what) ||
        !ok_or_report(g1.all_reduce(reinterpret_cast<int64_t*>(flags.data()), 1, ReduceOp::kMin),
                      what) ||
        !ok_or_report(
            g1.all_reduce(reinterpret_cast<int64_t*>(flags.data()) + 1, 1, ReduceOp::kMax), what) ||
        !ok_or_report(transfer.download(&done, flags.data(), sizeof(done)), what) ||
        !ok_or_report(transfer.download(&failed, flags.data() + sizeof(done), sizeof(failed)),
                      what)) {
      break;
    }
    if (failed != 0) {
      report(false, what, "a rank could not build gen 2; here: " + build_error);
      break;
    }
    if (done != 0) {
      agreed = true;
      break;
    }
  }
  if (!agreed || next == nullptr) {
    if (pending.valid()) (void)pending.wait();  // bounded by the spec's timeout
    return nullptr;  // a failure was reported; gen 2 (if any) goes with this scope
  }
  std::cout << "gen 1 ran " << num_iterations << " all-reduce rounds in " << seconds_since(started)
            << " s while gen 2 was built" << std::endl;
  report(traffic_ok, what + ": gen 1 traffic correct meanwhile", "wrong sums");
  report(true, what);

  current->destroy();
  const Status after = current->barrier();
  report(after.code() == ErrorCode::kFailedPrecondition, "gen 1 refuses calls after destroy",
         after.to_string());
  current->destroy();  // idempotent
  report(!current->usable(), "gen 1 not usable after destroy");
  return next;
}

void test_next_generation(const Peer& peer, NcclProcessGroup& g2) {
  exchange_and_check(
      peer, g2, "gen 2 all_to_all_v", [](int from, int to) { return block_bytes(from, to, 5); },
      [](int from, int to, size_t idx) { return block_byte(from, to, 5, idx); });
  check_all_reduce<int64_t>(peer, g2, "gen 2 all_reduce", ReduceOp::kSum, int64_value, 333);
  report(g2.barrier().is_ok(), "gen 2 barrier");
}

// ---- create/destroy cycles ------------------------------------------------------------------

struct Footprint {
  size_t free_bytes = 0;
  size_t num_threads = 0;
  size_t num_fds = 0;
};

size_t count_entries(const char* dir) {
  size_t count = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(dir, ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++count;
  }
  return count;
}

Footprint measure() {
  // Threads NCCL leaves to finish on their own (its bootstrap root) get a moment to exit, and
  // the stream-ordered allocator returns freed memory at a device synchronisation.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  (void)cudaDeviceSynchronize();
  Footprint footprint;
  size_t total = 0;
  (void)cudaMemGetInfo(&footprint.free_bytes, &total);
  footprint.num_threads = count_entries("/proc/self/task");
  footprint.num_fds = count_entries("/proc/self/fd");
  return footprint;
}

void test_cycles(const Peer& peer) {
  constexpr int kNumCycles = 20;
  constexpr int64_t kMaxGrowthBytes = 64ll << 20;
  constexpr int64_t kMaxThreadGrowth = 2;
  constexpr int64_t kMaxFdGrowth = 4;
  Footprint baseline;
  const auto started = Clock::now();
  for (int cycle = 0; cycle < kNumCycles; ++cycle) {
    auto group = create(peer, 100 + static_cast<uint64_t>(cycle), "cycle");
    if (group == nullptr) return;
    NcclProcessGroup& g = nccl(*group);
    DeviceBytes data(256 * sizeof(float));
    const Status reduced = g.all_reduce(reinterpret_cast<float*>(data.data()), 256, ReduceOp::kMax);
    const Status met = reduced.is_ok() ? g.barrier() : reduced;
    if (!ok_or_report(met, "cycle " + std::to_string(cycle))) return;
    group->destroy();
    group.reset();
    if (cycle == 0) baseline = measure();
  }
  const Footprint last = measure();
  const int64_t growth_bytes =
      static_cast<int64_t>(baseline.free_bytes) - static_cast<int64_t>(last.free_bytes);
  const int64_t thread_growth =
      static_cast<int64_t>(last.num_threads) - static_cast<int64_t>(baseline.num_threads);
  const int64_t fd_growth =
      static_cast<int64_t>(last.num_fds) - static_cast<int64_t>(baseline.num_fds);
  std::cout << kNumCycles << " create/destroy cycles in " << seconds_since(started)
            << " s; after cycle 1 vs after cycle " << kNumCycles << ": GPU memory in use +"
            << growth_bytes / (1 << 20) << " MiB (" << growth_bytes << " bytes), threads "
            << baseline.num_threads << " -> " << last.num_threads << ", fds " << baseline.num_fds
            << " -> " << last.num_fds << std::endl;
  report(growth_bytes <= kMaxGrowthBytes, "cycles keep GPU memory",
         "grew by " + std::to_string(growth_bytes) + " bytes");
  report(thread_growth <= kMaxThreadGrowth, "cycles keep threads",
         "grew by " + std::to_string(thread_growth));
  report(fd_growth <= kMaxFdGrowth, "cycles keep fds", "grew by " + std::to_string(fd_growth));
}

// ---- modes ----------------------------------------------------------------------------------

int run_all(const Peer& peer) {
  auto g1 = create(peer, 1, "ep");
  if (g1 == nullptr) return 1;
  report(dynamic_cast<NcclProcessGroup*>(g1.get()) != nullptr,
         "create returns an NcclProcessGroup");
  NcclProcessGroup& group = nccl(*g1);
  report(group.comm() != nullptr && group.stream() != nullptr, "create gen 1");

  test_all_to_all_v(peer, group);
  test_all_reduce(peer, group);
  test_all_gather(peer, group);
  test_broadcast(peer, group);
  test_send_recv(peer, group);
  bool barriers_ok = true;
  for (int idx = 0; idx < 3; ++idx)
    barriers_ok = ok_or_report(group.barrier(), "barrier") && barriers_ok;
  report(barriers_ok, "barrier x3");
  test_graph(peer, group);
  measure_enqueue_latency(peer, group);

  auto g2 = test_build_while_serving(peer, std::move(g1));
  if (g2 != nullptr) {
    test_next_generation(peer, nccl(*g2));
    g2->destroy();
  }
  g2.reset();
  test_cycles(peer);
  return g_num_failures == 0 ? 0 : 1;
}

int run_kill(const Peer& peer) {
  auto built = create(peer, 1, "ep");
  if (built == nullptr) return 1;
  NcclProcessGroup& group = nccl(*built);
  Transfer transfer(group, peer.timeout);
  constexpr size_t kNumElements = 1 << 16;
  std::vector<float> ones(kNumElements, 1.0f);
  DeviceBytes data(kNumElements * sizeof(float));
  if (!ok_or_report(transfer.upload(data.data(), ones.data(), data.size()), "kill: upload"))
    return 1;
  const auto started = Clock::now();
  constexpr double kGiveUpAfterSeconds = 120;
  for (int iteration = 0; seconds_since(started) < kGiveUpAfterSeconds; ++iteration) {
    // kMax of ones stays ones: no upload inside the loop, so nothing here can wait on a stream
    // that a dead peer left stuck, except the group's own bounded waits.
    const auto op_started = Clock::now();
    Status status =
        group.all_reduce(reinterpret_cast<float*>(data.data()), kNumElements, ReduceOp::kMax);
    if (status.is_ok()) status = group.synchronize(peer.timeout);
    if (status.is_ok()) {
      if (iteration == 0) {
        std::vector<float> result(kNumElements);
        const Status copied = transfer.download(result.data(), data.data(), data.size());
        const std::string mismatch =
            copied.is_ok() ? first_mismatch(result, ones) : copied.to_string();
        report(mismatch.empty(), "kill: first all_reduce", mismatch);
        if (peer.rank != 0) std::cout << "READY" << std::endl;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      continue;
    }
    if (peer.rank != 0) {
      report(false, "kill: the victim saw an error before it was killed", status.to_string());
      return 1;
    }
    const double op_seconds = seconds_since(op_started);
    const double limit = std::chrono::duration<double>(peer.timeout).count() + 5.0;
    std::cout << "survivor: error after " << op_seconds << " s at iteration " << iteration << ": "
              << status.to_string() << std::endl;
    report(
        status.code() == ErrorCode::kUnavailable || status.code() == ErrorCode::kDeadlineExceeded,
        "kill: the survivor gets kUnavailable or kDeadlineExceeded", status.to_string());
    report(op_seconds <= limit, "kill: the error came within the timeout",
           std::to_string(op_seconds) + " s > " + std::to_string(limit) + " s");
    const auto destroy_started = Clock::now();
    group.destroy();
    const double destroy_seconds = seconds_since(destroy_started);
    std::cout << "survivor: destroy took " << destroy_seconds << " s" << std::endl;
    report(destroy_seconds <= limit, "kill: destroy returns",
           std::to_string(destroy_seconds) + " s");
    const Status later = group.all_reduce(reinterpret_cast<float*>(data.data()), 1, ReduceOp::kSum);
    report(later.code() == ErrorCode::kFailedPrecondition, "kill: later calls are refused",
           later.to_string());
    return g_num_failures == 0 ? 0 : 1;
  }
  report(false, "kill",
         peer.rank == 0 ? "no error although the peer was killed" : "the victim was never killed");
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  // NVLink multicast can take a shared host's GPUs out of service: off before NCCL reads it.
  ::setenv("NCCL_NVLS_ENABLE", "0", 1);
  CLI::App app{"One rank of an NCCL process group (GPU test helper)"};
  Peer peer;
  std::string mode = "all";
  int timeout_ms = 20000;
  app.add_option("--rank", peer.rank)->required();
  app.add_option("--size", peer.size)->required();
  app.add_option("--store-port", peer.store_port, "the test's StoreServer")->required();
  app.add_option("--mode", mode)->check(CLI::IsMember({"all", "kill"}));
  app.add_option("--timeout-ms", timeout_ms, "the groups' timeout");
  CLI11_PARSE(app, argc, argv);
  peer.timeout = std::chrono::milliseconds(timeout_ms);
  eep::set_log_speaker("nccl_peer rank=" + std::to_string(peer.rank));

  int num_devices = 0;
  if (cudaGetDeviceCount(&num_devices) != cudaSuccess || num_devices == 0) {
    std::cout << "FAIL setup: no CUDA device" << std::endl;
    return 1;
  }
  peer.device = peer.rank % num_devices;
  // The CUDA context exists before the group's deadline starts.
  if (cudaSetDevice(peer.device) != cudaSuccess || cudaFree(nullptr) != cudaSuccess) {
    std::cout << "FAIL setup: cannot use device " << peer.device << std::endl;
    return 1;
  }
  std::cout << "rank " << peer.rank << "/" << peer.size << " on device " << peer.device << " of "
            << num_devices << ", pid " << ::getpid() << ", mode " << mode << std::endl;

  const int rc = mode == "kill" ? run_kill(peer) : run_all(peer);
  if (rc == 0 && g_num_failures == 0) {
    std::cout << "PASS all" << std::endl;
    return 0;
  }
  std::cout << "FAIL all: " << g_num_failures << " check(s) failed" << std::endl;
  return 1;
}
