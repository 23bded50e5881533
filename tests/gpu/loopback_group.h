// A test-only ProcessGroup whose ranks are threads of one process on one GPU: each rank has its
// own stream (or none: then the whole device stands for it), and all_to_all_v synchronises that
// stream, meets the other ranks at a barrier,
// copies each peer's send block (device to device, on the caller's stream), synchronises and
// meets them again. It lets expert-parallel code run at EP=N on a single GPU without NCCL. Only
// all_to_all_v and barrier are implemented; the other operations fail.
#pragma once

#include <cuda_runtime.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "eep/worker/comm/process_group.h"

namespace eep::gpu_test {

// Shared by the ranks of one loopback group.
class LoopbackHub {
 public:
  explicit LoopbackHub(int size) : size_(size), posted_(size) {}

  int size() const { return size_; }

  // False when another rank aborted or the others did not arrive within kTimeout (a rank that
  // failed and left: without the timeout the test would hang instead of failing).
  bool arrive_and_wait() {
    std::unique_lock lock(mutex_);
    if (aborted_) return false;
    const uint64_t generation = generation_;
    if (++num_arrived_ == size_) {
      num_arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return true;
    }
    const bool met =
        cv_.wait_for(lock, kTimeout, [&] { return generation_ != generation || aborted_; });
    if (!met || aborted_) {
      aborted_ = true;
      cv_.notify_all();
      return false;
    }
    return true;
  }

  void abort() {
    std::lock_guard lock(mutex_);
    aborted_ = true;
    cv_.notify_all();
  }

  // What rank r offers in the current all_to_all_v (written before the first barrier, read
  // between the two barriers).
  struct Posted {
    const char* send = nullptr;
    std::vector<size_t> send_bytes;
  };
  Posted& posted(int rank) { return posted_[rank]; }

 private:
  static constexpr std::chrono::seconds kTimeout{60};

  const int size_;
  std::mutex mutex_;
  std::condition_variable cv_;
  int num_arrived_ = 0;
  uint64_t generation_ = 0;
  bool aborted_ = false;
  std::vector<Posted> posted_;
};

class LoopbackGroup : public worker::ProcessGroup {
 public:
  LoopbackGroup(std::shared_ptr<LoopbackHub> hub, int rank, cudaStream_t stream)
      : hub_(std::move(hub)), rank_(rank), stream_(stream) {}

  int rank() const override { return rank_; }
  int size() const override { return hub_->size(); }
  uint64_t generation() const override { return 1; }
  const std::string& name() const override { return name_; }
  bool usable() const override { return usable_; }

  Status all_to_all_v(const void* send, const size_t* send_bytes_per_peer, void* recv,
                      const size_t* recv_bytes_per_peer) override {
    if (!usable_) return error(ErrorCode::kFailedPrecondition, "loopback group is broken");
    const int n = size();
    if (cudaError_t err = synchronize(); err != cudaSuccess) {
      return fail(std::string("stream before all_to_all_v: ") + cudaGetErrorString(err));
    }
    LoopbackHub::Posted& mine = hub_->posted(rank_);
    mine.send = static_cast<const char*>(send);
    mine.send_bytes.assign(send_bytes_per_peer, send_bytes_per_peer + n);
    if (!hub_->arrive_and_wait()) return fail("a peer did not reach all_to_all_v");
    size_t recv_offset = 0;
    for (int peer = 0; peer < n; ++peer) {
      const LoopbackHub::Posted& theirs = hub_->posted(peer);
      size_t send_offset = 0;
      for (int q = 0; q < rank_; ++q) send_offset += theirs.send_bytes[q];
      const size_t bytes = theirs.send_bytes[rank_];
      if (bytes != recv_bytes_per_peer[peer]) {
        return fail("rank " + std::to_string(peer) + " sends " + std::to_string(bytes) +
                    " bytes, rank " + std::to_string(rank_) + " expects " +
                    std::to_string(recv_bytes_per_peer[peer]));
      }
      if (bytes > 0) {
        const cudaError_t err =
            cudaMemcpyAsync(static_cast<char*>(recv) + recv_offset, theirs.send + send_offset,
                            bytes, cudaMemcpyDeviceToDevice, stream_);
        if (err != cudaSuccess) return fail(std::string("copy: ") + cudaGetErrorString(err));
      }
      recv_offset += bytes;
    }
    // The copies must be done before a peer reuses its send buffer.
    if (cudaError_t err = synchronize(); err != cudaSuccess) {
      return fail(std::string("stream after the copies: ") + cudaGetErrorString(err));
    }
    if (!hub_->arrive_and_wait()) return fail("a peer did not finish all_to_all_v");
    return Status::ok();
  }

  Status barrier() override {
    if (!hub_->arrive_and_wait()) return fail("a peer did not reach the barrier");
    return Status::ok();
  }

  Status send(const void*, size_t, int, uint32_t) override { return unsupported("send"); }
  Status recv(void*, size_t, int, uint32_t) override { return unsupported("recv"); }
  Status all_reduce(float*, size_t, worker::ReduceOp) override { return unsupported("all_reduce"); }
  Status all_reduce(int64_t*, size_t, worker::ReduceOp) override {
    return unsupported("all_reduce");
  }
  Status all_gather(const void*, size_t, void*) override { return unsupported("all_gather"); }
  Status broadcast(void*, size_t, int) override { return unsupported("broadcast"); }
  void destroy() override { usable_ = false; }

 private:
  cudaError_t synchronize() const {
    return stream_ != nullptr ? cudaStreamSynchronize(stream_) : cudaDeviceSynchronize();
  }
  Status fail(const std::string& what) {
    usable_ = false;
    hub_->abort();  // wake the peers waiting at a barrier
    return error(ErrorCode::kUnavailable,
                 "loopback group rank " + std::to_string(rank_) + ": " + what);
  }
  static Status unsupported(const char* op) {
    return error(ErrorCode::kFailedPrecondition,
                 std::string("loopback group: ") + op + " is not implemented");
  }

  std::shared_ptr<LoopbackHub> hub_;
  int rank_;
  cudaStream_t stream_;
  std::string name_ = "ep";
  bool usable_ = true;
};

}  // namespace eep::gpu_test
