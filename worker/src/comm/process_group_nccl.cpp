#include "eep/worker/comm/process_group_nccl.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "eep/common/log.h"
#include "eep/worker/comm/kv_store.h"

namespace eep::worker {

namespace {

using Clock = std::chrono::steady_clock;

// The store key (after store_prefix(generation, name)) under which rank 0 publishes the id.
constexpr const char* kUniqueIdKey = "nccl_unique_id";

// A non-blocking communicator hands every call to a thread of NCCL's and says ncclInProgress
// until that thread has enqueued the work, typically within tens of microseconds: polls yield
// for this long first (an operation's latency matters to a decode step) ...
constexpr std::chrono::microseconds kSpinFor{2000};
// ... and then sleep this long between looks, so a wait of seconds does not burn a core.
constexpr std::chrono::microseconds kPollSleep{50};

// One poll loop: the caller looks at its condition, then calls pause().
class Poller {
 public:
  Poller() : started_(Clock::now()) {}
  void pause() const {
    if (Clock::now() - started_ < kSpinFor) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(kPollSleep);
    }
  }

 private:
  Clock::time_point started_;
};

std::chrono::milliseconds remaining_until(Clock::time_point deadline) {
  return std::max(std::chrono::milliseconds(1),
                  std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
}

int64_t ms_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

std::string cuda_text(cudaError_t err) {
  return std::string(cudaGetErrorName(err)) + " (" + cudaGetErrorString(err) + ")";
}

// NCCL's name for the result and its last error message (which may be about an earlier call:
// NCCL keeps one per process).
std::string nccl_text(ncclResult_t result, ncclComm_t comm) {
  std::string text = ncclGetErrorString(result);
  const char* last = ncclGetLastError(comm);
  if (last != nullptr && last[0] != '\0') text += ": " + std::string(last);
  return text;
}

ncclRedOp_t to_nccl(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kMin:
      return ncclMin;
  }
  EEP_CHECK_MSG(false, "unknown ReduceOp " << static_cast<int>(op));
}

template <typename T>
constexpr ncclDataType_t nccl_type();
template <>
constexpr ncclDataType_t nccl_type<float>() {
  return ncclFloat32;
}
template <>
constexpr ncclDataType_t nccl_type<int64_t>() {
  return ncclInt64;
}

// Makes `device` current for a scope and restores the caller's device: destroy() may run on
// whatever thread drops the last reference.
class ScopedDevice {
 public:
  explicit ScopedDevice(int device) {
    if (cudaGetDevice(&saved_) != cudaSuccess) saved_ = -1;
    if (saved_ != device) (void)cudaSetDevice(device);
  }
  ~ScopedDevice() {
    if (saved_ >= 0) (void)cudaSetDevice(saved_);
  }
  ScopedDevice(const ScopedDevice&) = delete;
  ScopedDevice& operator=(const ScopedDevice&) = delete;

 private:
  int saved_ = -1;
};

// CUDA calls that a graph capture on another thread forbids (allocations, stream creation)
// are made in relaxed capture mode, as NCCL does for its own: a group is built on a helper
// thread while the engine thread may be capturing a decode graph.
class RelaxedCaptureMode {
 public:
  RelaxedCaptureMode() { (void)cudaThreadExchangeStreamCaptureMode(&mode_); }
  ~RelaxedCaptureMode() { (void)cudaThreadExchangeStreamCaptureMode(&mode_); }
  RelaxedCaptureMode(const RelaxedCaptureMode&) = delete;
  RelaxedCaptureMode& operator=(const RelaxedCaptureMode&) = delete;

 private:
  cudaStreamCaptureMode mode_ = cudaStreamCaptureModeRelaxed;
};

// NVLink multicast (NVLS) can take every GPU of a shared host out of service; NCCL uses it by
// default where the hardware has it. Someone who wants it sets NCCL_NVLS_ENABLE=1 explicitly.
void default_nvls_off() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (std::getenv("NCCL_NVLS_ENABLE") == nullptr) {
      ::setenv("NCCL_NVLS_ENABLE", "0", 0);
      EEP_LOG_INFO("NCCL_NVLS_ENABLE was not set: set it to 0 (no NVLink multicast)");
    }
  });
}

Status validate(const GroupSpec& spec, const NcclGroupOptions& options) {
  EEP_RETURN_IF_ERROR(validate_group_spec(spec));
  int num_devices = 0;
  const cudaError_t err = cudaGetDeviceCount(&num_devices);
  if (err != cudaSuccess) {
    return error(
        ErrorCode::kUnavailable,
        "group " + spec.name + ": no CUDA device to build an NCCL group on: " + cuda_text(err));
  }
  if (options.device < 0 || options.device >= num_devices) {
    return error(ErrorCode::kInvalidArgument, "group " + spec.name + ": device " +
                                                  std::to_string(options.device) +
                                                  " does not exist (this machine has " +
                                                  std::to_string(num_devices) + " CUDA devices)");
  }
  return Status::ok();
}

}  // namespace

NcclProcessGroup::NcclProcessGroup(GroupSpec spec, int device, cudaStream_t stream,
                                   bool owns_stream)
    : spec_(std::move(spec)), device_(device), stream_(stream), owns_stream_(owns_stream) {}

NcclProcessGroup::~NcclProcessGroup() {
  destroy();
}

std::string NcclProcessGroup::who() const {
  return "[group " + spec_.name + " gen=" + std::to_string(spec_.generation) +
         " rank=" + std::to_string(spec_.rank) + "/" + std::to_string(spec_.size) + " nccl]";
}

Status NcclProcessGroup::init(const ncclUniqueId& unique_id, Deadline deadline) {
  EEP_CHECK(comm_ == nullptr && barrier_word_ == nullptr && internal_stream_ == nullptr);
  // The build runs on a helper thread while stream() may carry the previous generation's work
  // (the engine shares one stream between generations) or be capturing a graph: nothing of
  // the build goes on it, or it would interleave with that work differently on each rank.
  cudaError_t err = cudaStreamCreateWithFlags(&internal_stream_, cudaStreamNonBlocking);
  if (err != cudaSuccess) {
    internal_stream_ = nullptr;
    return fail("init", ErrorCode::kResourceExhausted, "cudaStreamCreate: " + cuda_text(err));
  }
  // Stream-ordered on the private stream, so destroy() frees it without waiting on a stream
  // that an aborted communicator may have left stuck.
  void* word = nullptr;
  err = cudaMallocAsync(&word, sizeof(int32_t), internal_stream_);
  if (err != cudaSuccess) {
    return fail("init", ErrorCode::kResourceExhausted,
                "cudaMallocAsync of the barrier word: " + cuda_text(err));
  }
  barrier_word_ = static_cast<int32_t*>(word);
  err = cudaMemsetAsync(barrier_word_, 0, sizeof(int32_t), internal_stream_);
  if (err != cudaSuccess) {
    return fail("init", ErrorCode::kInternal, "cudaMemsetAsync: " + cuda_text(err));
  }

  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  // NCCL keeps a copy of the name; it shows in NCCL's own log lines (NCCL_DEBUG=INFO).
  const std::string comm_name = spec_.name + ".g" + std::to_string(spec_.generation);
  config.commName = comm_name.c_str();
  const ncclResult_t result =
      ncclCommInitRankConfig(&comm_, spec_.size, unique_id, spec_.rank, &config);
  EEP_RETURN_IF_ERROR(settle("init", result, deadline));
  // A first collective proves the communicator works end to end; waiting for it also makes the
  // barrier word's allocation and memset visible to later work on stream().
  EEP_RETURN_IF_ERROR(settle(
      "init",
      ncclAllReduce(barrier_word_, barrier_word_, 1, ncclInt32, ncclSum, comm_, internal_stream_),
      deadline));
  return wait_stream("init", internal_stream_, deadline);
}

void NcclProcessGroup::abort_comm() {
  if (comm_ == nullptr) return;
  // Blocks until NCCL has told its kernels and threads to stop and freed the communicator.
  const ncclResult_t result = ncclCommAbort(comm_);
  if (result != ncclSuccess) {
    EEP_LOG_WARN(who() << " ncclCommAbort: " << ncclGetErrorString(result));
  }
  comm_ = nullptr;
}

Status NcclProcessGroup::fail(const char* op, ErrorCode code, const std::string& what) {
  state_ = State::kBroken;
  broken_reason_ = std::string(op) + " failed: " + what;
  EEP_LOG_WARN(who() << " " << broken_reason_ << "; aborting the communicator");
  ScopedDevice device(device_);
  abort_comm();
  return error(code, who() + " " + op + " failed (" + what +
                         "): a peer is gone or stuck; roll back or rebuild without it");
}

Status NcclProcessGroup::check_usable(const char* op) const {
  if (state_ == State::kDestroyed) {
    return error(ErrorCode::kFailedPrecondition,
                 who() + " " + op + " after destroy(): use the current generation's group");
  }
  if (state_ == State::kBroken) {
    return error(ErrorCode::kFailedPrecondition, who() + " " + op + " on a broken group (" +
                                                     broken_reason_ + "): build a new generation");
  }
  return Status::ok();
}

Status NcclProcessGroup::check_peer(const char* op, int peer) const {
  if (peer < 0 || peer >= spec_.size || peer == spec_.rank) {
    return error(ErrorCode::kInvalidArgument, who() + " " + op + ": peer " + std::to_string(peer) +
                                                  " is not another rank of this group");
  }
  return Status::ok();
}

Status NcclProcessGroup::settle(const char* op, ncclResult_t result, Deadline deadline) {
  if (result != ncclSuccess && result != ncclInProgress) {
    return fail(op, ErrorCode::kUnavailable, nccl_text(result, comm_));
  }
  // Even a call that returned ncclSuccess may have found the communicator in error (a peer's
  // connection died since the last call): the state says so.
  Poller poller;
  while (true) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t query = ncclCommGetAsyncError(comm_, &state);
    if (query != ncclSuccess) {
      return fail(op, ErrorCode::kUnavailable, "ncclCommGetAsyncError: " + nccl_text(query, comm_));
    }
    if (state == ncclSuccess) return Status::ok();
    if (state != ncclInProgress) {
      return fail(op, ErrorCode::kUnavailable, nccl_text(state, comm_));
    }
    if (Clock::now() >= deadline) {
      return fail(op, ErrorCode::kDeadlineExceeded,
                  "NCCL still in progress at the deadline (group timeout " +
                      std::to_string(spec_.timeout.count()) + " ms): a peer did not join");
    }
    poller.pause();
  }
}

Status NcclProcessGroup::wait_stream(const char* op, cudaStream_t stream, Deadline deadline) {
  Poller poller;
  while (true) {
    const cudaError_t err = cudaStreamQuery(stream);
    if (err != cudaSuccess && err != cudaErrorNotReady) {
      (void)cudaGetLastError();  // clear a non-sticky error so the next call does not see it
      return fail(op, ErrorCode::kUnavailable, "the stream failed: " + cuda_text(err));
    }
    ncclResult_t state = ncclSuccess;
    const ncclResult_t query = ncclCommGetAsyncError(comm_, &state);
    if (query != ncclSuccess) {
      return fail(op, ErrorCode::kUnavailable, "ncclCommGetAsyncError: " + nccl_text(query, comm_));
    }
    if (state != ncclSuccess && state != ncclInProgress) {
      return fail(op, ErrorCode::kUnavailable, nccl_text(state, comm_));
    }
    if (err == cudaSuccess) return Status::ok();
    if (Clock::now() >= deadline) {
      return fail(op, ErrorCode::kDeadlineExceeded,
                  "the stream did not drain in time (a peer is gone or stuck)");
    }
    poller.pause();
  }
}

Status NcclProcessGroup::synchronize(std::chrono::milliseconds timeout) {
  EEP_RETURN_IF_ERROR(check_usable("synchronize"));
  return wait_stream("synchronize", stream_, Clock::now() + timeout);
}

Status NcclProcessGroup::barrier() {
  EEP_RETURN_IF_ERROR(check_usable("barrier"));
  const auto deadline = Clock::now() + spec_.collective_timeout;
  EEP_RETURN_IF_ERROR(settle(
      "barrier", ncclAllReduce(barrier_word_, barrier_word_, 1, ncclInt32, ncclSum, comm_, stream_),
      deadline));
  return wait_stream("barrier", stream_, deadline);
}

Status NcclProcessGroup::send(const void* data, size_t num_bytes, int peer, uint32_t /*tag*/) {
  EEP_RETURN_IF_ERROR(check_usable("send"));
  EEP_RETURN_IF_ERROR(check_peer("send", peer));
  if (num_bytes == 0) return Status::ok();
  return settle("send", ncclSend(data, num_bytes, ncclUint8, peer, comm_, stream_),
                Clock::now() + spec_.collective_timeout);
}

Status NcclProcessGroup::recv(void* data, size_t num_bytes, int peer, uint32_t /*tag*/) {
  EEP_RETURN_IF_ERROR(check_usable("recv"));
  EEP_RETURN_IF_ERROR(check_peer("recv", peer));
  if (num_bytes == 0) return Status::ok();
  return settle("recv", ncclRecv(data, num_bytes, ncclUint8, peer, comm_, stream_),
                Clock::now() + spec_.collective_timeout);
}

Status NcclProcessGroup::all_to_all_v(const void* send, const size_t* send_bytes_per_peer,
                                      void* recv, const size_t* recv_bytes_per_peer) {
  EEP_RETURN_IF_ERROR(check_usable("all_to_all_v"));
  const int num_ranks = spec_.size;
  const int my_rank = spec_.rank;
  if (send_bytes_per_peer[my_rank] != recv_bytes_per_peer[my_rank]) {
    return error(ErrorCode::kInvalidArgument, who() + " all_to_all_v: this rank sends itself " +
                                                  std::to_string(send_bytes_per_peer[my_rank]) +
                                                  " bytes but expects " +
                                                  std::to_string(recv_bytes_per_peer[my_rank]));
  }
  const auto* send_base = static_cast<const char*>(send);
  auto* recv_base = static_cast<char*>(recv);
  // Offsets are prefix sums of the host counts, computed here so that a captured call bakes in
  // the sizes it was captured with.
  size_t send_offset = 0;
  size_t recv_offset = 0;
  size_t my_send_offset = 0;
  size_t my_recv_offset = 0;
  bool any_peer_traffic = false;
  for (int peer = 0; peer < num_ranks; ++peer) {
    if (peer == my_rank) {
      my_send_offset = send_offset;
      my_recv_offset = recv_offset;
    } else if (send_bytes_per_peer[peer] > 0 || recv_bytes_per_peer[peer] > 0) {
      any_peer_traffic = true;
    }
    send_offset += send_bytes_per_peer[peer];
    recv_offset += recv_bytes_per_peer[peer];
  }
  // This rank's own block is a device copy on the stream, ahead of the NCCL work (NCCL must
  // not see other work enqueued on its stream while a call is in progress).
  if (send_bytes_per_peer[my_rank] > 0) {
    const cudaError_t err =
        cudaMemcpyAsync(recv_base + my_recv_offset, send_base + my_send_offset,
                        send_bytes_per_peer[my_rank], cudaMemcpyDeviceToDevice, stream_);
    if (err != cudaSuccess) {
      return error(ErrorCode::kInternal,
                   who() + " all_to_all_v: copying this rank's own block: " + cuda_text(err));
    }
  }
  if (!any_peer_traffic) return Status::ok();

  // Empty blocks travel as nothing at all: both sides know the size is zero.
  ncclResult_t result = ncclGroupStart();
  if (result != ncclSuccess) {
    return fail("all_to_all_v", ErrorCode::kUnavailable, nccl_text(result, comm_));
  }
  ncclResult_t first_failure = ncclSuccess;
  send_offset = 0;
  recv_offset = 0;
  for (int peer = 0; peer < num_ranks; ++peer) {
    if (peer != my_rank && send_bytes_per_peer[peer] > 0) {
      result = ncclSend(send_base + send_offset, send_bytes_per_peer[peer], ncclUint8, peer, comm_,
                        stream_);
      if (first_failure == ncclSuccess) first_failure = result;
    }
    if (peer != my_rank && recv_bytes_per_peer[peer] > 0) {
      result = ncclRecv(recv_base + recv_offset, recv_bytes_per_peer[peer], ncclUint8, peer, comm_,
                        stream_);
      if (first_failure == ncclSuccess) first_failure = result;
    }
    send_offset += send_bytes_per_peer[peer];
    recv_offset += recv_bytes_per_peer[peer];
  }
  // Always closed, even after a failed call inside: NCCL then drops the whole group.
  result = ncclGroupEnd();
  if (first_failure != ncclSuccess && first_failure != ncclInProgress) result = first_failure;
  return settle("all_to_all_v", result, Clock::now() + spec_.collective_timeout);
}

template <typename T>
Status NcclProcessGroup::all_reduce_typed(T* data, size_t num_elements, ReduceOp op) {
  EEP_RETURN_IF_ERROR(check_usable("all_reduce"));
  if (num_elements == 0) return Status::ok();
  return settle(
      "all_reduce",
      ncclAllReduce(data, data, num_elements, nccl_type<T>(), to_nccl(op), comm_, stream_),
      Clock::now() + spec_.collective_timeout);
}

Status NcclProcessGroup::all_reduce(float* data, size_t num_elements, ReduceOp op) {
  return all_reduce_typed(data, num_elements, op);
}

Status NcclProcessGroup::all_reduce(int64_t* data, size_t num_elements, ReduceOp op) {
  return all_reduce_typed(data, num_elements, op);
}

Status NcclProcessGroup::all_gather(const void* send, size_t num_bytes_per_rank, void* recv) {
  EEP_RETURN_IF_ERROR(check_usable("all_gather"));
  if (num_bytes_per_rank == 0) return Status::ok();
  return settle("all_gather",
                ncclAllGather(send, recv, num_bytes_per_rank, ncclUint8, comm_, stream_),
                Clock::now() + spec_.collective_timeout);
}

Status NcclProcessGroup::broadcast(void* data, size_t num_bytes, int root) {
  EEP_RETURN_IF_ERROR(check_usable("broadcast"));
  if (root < 0 || root >= spec_.size) {
    return error(ErrorCode::kInvalidArgument,
                 who() + " broadcast: root " + std::to_string(root) + " is not a rank");
  }
  if (num_bytes == 0) return Status::ok();
  return settle("broadcast", ncclBroadcast(data, data, num_bytes, ncclUint8, root, comm_, stream_),
                Clock::now() + spec_.collective_timeout);
}

void NcclProcessGroup::destroy() {
  if (state_ == State::kDestroyed) return;
  ScopedDevice device(device_);
  RelaxedCaptureMode relaxed;
  const auto started = Clock::now();
  bool finalized = false;
  if (comm_ != nullptr && state_ == State::kReady) {
    // Finalize flushes what is enqueued and tears down the connections with the peers; it is
    // non-blocking like everything else on this communicator, so it is polled and bounded.
    const auto deadline = started + spec_.timeout;
    ncclResult_t result = ncclCommFinalize(comm_);
    Poller poller;
    while (result == ncclInProgress && Clock::now() < deadline) {
      poller.pause();
      if (ncclCommGetAsyncError(comm_, &result) != ncclSuccess) result = ncclInternalError;
    }
    if (result == ncclSuccess) {
      result = ncclCommDestroy(comm_);
      if (result != ncclSuccess && result != ncclInProgress) {
        EEP_LOG_WARN(who() << " ncclCommDestroy: " << nccl_text(result, nullptr));
      }
      comm_ = nullptr;
      finalized = true;
    } else {
      EEP_LOG_WARN(
          who() << " finalize did not finish ("
                << (result == ncclInProgress ? std::string("timed out") : nccl_text(result, comm_))
                << "): aborting the communicator");
    }
  }
  abort_comm();  // a broken group, or a finalize that failed
  if (barrier_word_ != nullptr) {
    // The communicator is finalized or aborted: no operation of it uses the word any more.
    (void)cudaFreeAsync(barrier_word_, internal_stream_);
    barrier_word_ = nullptr;
  }
  if (internal_stream_ != nullptr) {
    (void)cudaStreamDestroy(internal_stream_);  // returns at once; goes when its work is done
    internal_stream_ = nullptr;
  }
  if (owns_stream_ && stream_ != nullptr) {
    // Returns at once; the stream's resources go when its work is done.
    (void)cudaStreamDestroy(stream_);
  }
  stream_ = nullptr;
  state_ = State::kDestroyed;
  EEP_LOG_INFO(who() << " destroyed in " << ms_since(started) << " ms"
                     << (finalized ? "" : " (communicator aborted)"));
}

Result<std::unique_ptr<ProcessGroup>> create_nccl_group(const GroupSpec& spec,
                                                        const NcclGroupOptions& options) {
  EEP_RETURN_IF_ERROR(validate(spec, options));
  default_nvls_off();
  const auto started = Clock::now();
  const auto deadline = started + spec.timeout;
  const std::string building = "building NCCL group " + spec.name + " of generation " +
                               std::to_string(spec.generation) + " as rank " +
                               std::to_string(spec.rank) + "/" + std::to_string(spec.size);
  cudaError_t err = cudaSetDevice(options.device);
  if (err != cudaSuccess) {
    return error(
        ErrorCode::kUnavailable,
        building + ": cudaSetDevice(" + std::to_string(options.device) + "): " + cuda_text(err));
  }

  ncclUniqueId unique_id;
  std::memset(&unique_id, 0, sizeof(unique_id));
  {
    EEP_ASSIGN_OR_RETURN(auto store, StoreClient::connect(spec.store_host, spec.store_port));
    const std::string key = store_prefix(spec.generation, spec.name) + kUniqueIdKey;
    if (spec.rank == 0) {
      const ncclResult_t result = ncclGetUniqueId(&unique_id);
      if (result != ncclSuccess) {
        return error(ErrorCode::kUnavailable,
                     building + ": ncclGetUniqueId: " + nccl_text(result, nullptr));
      }
      Status published =
          store->set_value(key, std::string(unique_id.internal, sizeof(unique_id.internal)));
      if (!published.is_ok()) {
        return error(published.code(),
                     building + ": publishing the NCCL unique id: " + published.message());
      }
    } else {
      auto value = store->wait_value(key, remaining_until(deadline));
      if (!value.is_ok()) {
        return error(value.status().code(), building + ": waiting for rank 0's NCCL unique id (" +
                                                key + "): " + value.status().message());
      }
      if (value->size() != sizeof(unique_id.internal)) {
        return error(ErrorCode::kInternal, building + ": the NCCL unique id under " + key +
                                               " has " + std::to_string(value->size()) +
                                               " bytes, not " +
                                               std::to_string(sizeof(unique_id.internal)));
      }
      std::memcpy(unique_id.internal, value->data(), sizeof(unique_id.internal));
    }
  }  // the store is not needed any more: do not hold its socket

  RelaxedCaptureMode relaxed;
  cudaStream_t stream = options.stream;
  const bool owns_stream = stream == nullptr;
  if (owns_stream) {
    err = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
    if (err != cudaSuccess) {
      return error(ErrorCode::kResourceExhausted,
                   building + ": cudaStreamCreateWithFlags: " + cuda_text(err));
    }
  }
  // From here on the group owns the stream, and its destructor cleans up after a failure.
  auto group = std::make_unique<NcclProcessGroup>(spec, options.device, stream, owns_stream);
  Status ready = group->init(unique_id, deadline);
  if (!ready.is_ok()) {
    return error(ready.code(), building + " failed after " + std::to_string(ms_since(started)) +
                                   " ms: " + ready.message());
  }
  EEP_LOG_INFO(group->who() << " built on device " << options.device << " in " << ms_since(started)
                            << " ms");
  return std::unique_ptr<ProcessGroup>(std::move(group));
}

}  // namespace eep::worker
