// The GPU backend's ProcessGroup: one NCCL communicator of one generation (DESIGN.md section 5).
// The communicator is created non-blocking (ncclConfig_t.blocking = 0), so building generation
// g+1 on a helper thread never stalls the thread that serves g, and every wait on NCCL is a
// bounded poll that can give up and abort instead of hanging.
//
// How the ProcessGroup contract (process_group.h) reads on the GPU:
// - Buffers are device memory of options.device. Sizes and count arrays (all_to_all_v's
//   per-peer byte counts) are host memory, read during the call.
// - Every operation is stream-ordered on stream(): it returns once NCCL has enqueued it, not
//   once it ran. Later work on the same stream sees its result; the host sees it after
//   synchronize() (or any other wait on the stream). This refines the contract's "blocking":
//   a buffer may be reused by work enqueued on stream() after the call, not by the host.
// - all_to_all_v, all_reduce, all_gather, broadcast, send and recv never synchronise with the
//   device, so they may be captured in a CUDA graph (the MoE dispatch captures fixed-size
//   all_to_all_v in decode graphs). NCCL connects peers lazily on their first operation, which
//   cannot happen inside a capture: run the same operation eagerly once before capturing it.
//   NCCL enqueues a non-blocking communicator's work from a thread of its own, so capture in
//   cudaStreamCaptureModeThreadLocal (or Relaxed). barrier() and synchronize() wait on the host
//   and must not be captured. Destroy every graph that holds an operation of the group before
//   destroy(): NCCL's teardown waits for those graphs to go.
// - Each operation waits on the host (bounded by the group's timeout) until NCCL's thread has
//   enqueued it: on a non-blocking communicator NCCL says ncclInProgress until then, and
//   nothing else may be enqueued on the stream meanwhile.
// - send/recv: NCCL keeps the order of messages per peer; the tag is checked by nobody (it is
//   there for the Gloo backend and for readers). A send completes on the GPU only when the
//   peer's matching recv runs, so two ranks that both send before they receive deadlock on their
//   streams: order the pair (one sends first, the other receives first) or use all_to_all_v.
// - Failures: an NCCL call that fails (ncclRemoteError, ncclSystemError, ...) or a communicator
//   whose asynchronous error is set gives kUnavailable with NCCL's message; an operation that
//   NCCL keeps in progress beyond the group's timeout gives kDeadlineExceeded. Either way the
//   communicator is aborted at once (so nothing stays stuck on the stream) and the group is
//   broken: every later call gives kFailedPrecondition, as for Gloo.
// - A peer that dies mid-operation is not always noticed by NCCL (on NVLink the kernel just
//   waits): the engine notices through synchronize()'s deadline.
//
// Threads: calls on one group come from one thread at a time whose current device is
// options.device (create sets it on the thread it runs on). Several groups may share one
// stream (generation g serving while g+1 is built): the group enqueues on stream() only inside
// the calls its user makes; its build and teardown use a private stream.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <cuda_runtime.h>
#include <nccl.h>

#include "eep/common/status.h"
#include "eep/worker/comm/process_group.h"

namespace eep::worker {

struct NcclGroupOptions {
  int device = 0;  // the CUDA device of this rank
  // Where every operation of the group is enqueued. nullptr: the group creates its own
  // (non-blocking) stream and destroys it with the group.
  cudaStream_t stream = nullptr;
};

class NcclProcessGroup final : public ProcessGroup {
 public:
  // Built by create_nccl_group; owns_stream says whether destroy() destroys `stream`.
  NcclProcessGroup(GroupSpec spec, int device, cudaStream_t stream, bool owns_stream);
  ~NcclProcessGroup() override;
  NcclProcessGroup(const NcclProcessGroup&) = delete;
  NcclProcessGroup& operator=(const NcclProcessGroup&) = delete;

  int rank() const override { return spec_.rank; }
  int size() const override { return spec_.size; }
  uint64_t generation() const override { return spec_.generation; }
  const std::string& name() const override { return spec_.name; }
  bool usable() const override { return state_ == State::kReady; }

  Status send(const void* data, size_t num_bytes, int peer, uint32_t tag) override;
  Status recv(void* data, size_t num_bytes, int peer, uint32_t tag) override;
  Status all_to_all_v(const void* send, const size_t* send_bytes_per_peer, void* recv,
                      const size_t* recv_bytes_per_peer) override;
  Status all_reduce(float* data, size_t num_elements, ReduceOp op) override;
  Status all_reduce(int64_t* data, size_t num_elements, ReduceOp op) override;
  // send must be recv + rank() * num_bytes_per_rank or not overlap recv at all.
  Status all_gather(const void* send, size_t num_bytes_per_rank, void* recv) override;
  Status broadcast(void* data, size_t num_bytes, int root) override;
  // An all-reduce of one device integer, then synchronize(timeout of the group): returns when
  // every rank reached it and everything enqueued on stream() before it has run.
  Status barrier() override;
  // Finalizes the communicator (flushing its operations, bounded by the group's timeout) and
  // destroys it; a broken group, or one whose finalize does not finish in time, is aborted.
  // Frees the group's device memory and its own stream. Idempotent.
  void destroy() override;

  cudaStream_t stream() const { return stream_; }
  // The communicator, for callers that enqueue NCCL calls of their own (null once destroyed or
  // broken). Such calls must follow the non-blocking rules (poll ncclCommGetAsyncError while it
  // says ncclInProgress).
  ncclComm_t comm() { return comm_; }

  // Waits until everything enqueued on stream() has run, polling cudaStreamQuery and
  // ncclCommGetAsyncError. An NCCL error gives kUnavailable; past `timeout` the communicator is
  // aborted (a peer is gone or stuck), the group is broken and the result is kDeadlineExceeded.
  // Not capturable. The stream also carries the caller's own work, which this waits for too.
  Status synchronize(std::chrono::milliseconds timeout);

  // "[group ep gen=3 rank=1/4 nccl]", the prefix of every message and log line.
  std::string who() const;

 private:
  friend Result<std::unique_ptr<ProcessGroup>> create_nccl_group(const GroupSpec& spec,
                                                                 const NcclGroupOptions& options);
  enum class State { kReady, kBroken, kDestroyed };
  using Deadline = std::chrono::steady_clock::time_point;

  // Part of create_nccl_group: allocates the barrier's word, creates the communicator from the
  // unique id, polls it until it is ready and runs a first all-reduce on internal_stream_, all
  // before `deadline`.
  Status init(const ncclUniqueId& unique_id, Deadline deadline);

  Status check_usable(const char* op) const;
  Status check_peer(const char* op, int peer) const;
  // Turns the result of an NCCL call (and the communicator's state after it) into a Status:
  // waits out ncclInProgress until `deadline`, breaks the group on any failure.
  Status settle(const char* op, ncclResult_t result, Deadline deadline);
  // Polls `stream` and the communicator until the stream is idle.
  Status wait_stream(const char* op, cudaStream_t stream, Deadline deadline);
  // Aborts the communicator and marks the group broken; returns `code` with the message.
  Status fail(const char* op, ErrorCode code, const std::string& what);
  template <typename T>
  Status all_reduce_typed(T* data, size_t num_elements, ReduceOp op);
  void abort_comm();

  GroupSpec spec_;
  int device_;
  cudaStream_t stream_;
  bool owns_stream_;
  // The group's own stream for its build and teardown (never the caller's work).
  cudaStream_t internal_stream_ = nullptr;
  ncclComm_t comm_ = nullptr;
  int32_t* barrier_word_ = nullptr;  // device memory, one int32, allocated on internal_stream_
  State state_ = State::kReady;
  std::string broken_reason_;
};

// Builds the group: rank 0 calls ncclGetUniqueId and publishes the id in the group's store
// under store_prefix(generation, name) + "nccl_unique_id"; the other ranks wait for it; every
// rank creates its communicator non-blocking on options.device (cudaSetDevice on the calling
// thread), waits until it is ready and ends with an all-reduce on a private stream (never on
// options.stream, which may be serving the previous generation). Bounded by spec.timeout in all:
// kDeadlineExceeded naming the group and the generation when a rank does not come.
// The result is an NcclProcessGroup (dynamic_cast to reach stream() and synchronize()).
// If NCCL_NVLS_ENABLE is not set in the environment, this sets it to 0: NVLink multicast can
// take a shared host's GPUs out of service.
Result<std::unique_ptr<ProcessGroup>> create_nccl_group(const GroupSpec& spec,
                                                        const NcclGroupOptions& options);

}  // namespace eep::worker
