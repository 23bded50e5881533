#include "eep/worker/comm/process_group_gloo.h"

#include <algorithm>
#include <cstring>
#include <sstream>
#include <vector>

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/common/logging.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/transport/unbound_buffer.h>
#include <gloo/types.h>

#include "eep/common/log.h"
#include "eep/worker/comm/kv_store.h"

namespace eep::worker {

std::string_view to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return "sum";
    case ReduceOp::kMax:
      return "max";
    case ReduceOp::kMin:
      return "min";
  }
  return "unknown";
}

namespace {

// Slot prefixes of our own point-to-point traffic; Gloo's collectives use 0x01..0x08
// (gloo/types.h), so these never match a collective's message.
constexpr uint8_t kSendRecvSlotPrefix = 0x40;
constexpr uint8_t kAllToAllVSlotPrefix = 0x41;

using Clock = std::chrono::steady_clock;

std::chrono::milliseconds remaining_until(Clock::time_point deadline) {
  // Gloo treats a non-positive timeout as "unset" (wait forever): never hand it one.
  return std::max(std::chrono::milliseconds(1),
                  std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
}

template <typename T>
gloo::AllreduceOptions::Func reduce_function(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return [](void* out, const void* a, const void* b, size_t n) {
        auto* o = static_cast<T*>(out);
        const auto* x = static_cast<const T*>(a);
        const auto* y = static_cast<const T*>(b);
        for (size_t idx = 0; idx < n; ++idx) o[idx] = x[idx] + y[idx];
      };
    case ReduceOp::kMax:
      return [](void* out, const void* a, const void* b, size_t n) {
        auto* o = static_cast<T*>(out);
        const auto* x = static_cast<const T*>(a);
        const auto* y = static_cast<const T*>(b);
        for (size_t idx = 0; idx < n; ++idx) o[idx] = std::max(x[idx], y[idx]);
      };
    case ReduceOp::kMin:
      return [](void* out, const void* a, const void* b, size_t n) {
        auto* o = static_cast<T*>(out);
        const auto* x = static_cast<const T*>(a);
        const auto* y = static_cast<const T*>(b);
        for (size_t idx = 0; idx < n; ++idx) o[idx] = std::min(x[idx], y[idx]);
      };
  }
  EEP_CHECK_MSG(false, "unknown ReduceOp " << static_cast<int>(op));
}

class GlooProcessGroup final : public ProcessGroup {
 public:
  GlooProcessGroup(GroupSpec spec, std::shared_ptr<gloo::transport::Device> device,
                   std::shared_ptr<gloo::rendezvous::Context> context)
      : spec_(std::move(spec)), device_(std::move(device)), context_(std::move(context)) {}
  ~GlooProcessGroup() override { destroy(); }

  int rank() const override { return spec_.rank; }
  int size() const override { return spec_.size; }
  uint64_t generation() const override { return spec_.generation; }
  const std::string& name() const override { return spec_.name; }
  bool usable() const override { return state_ == State::kReady; }

  Status send(const void* data, size_t num_bytes, int peer, uint32_t tag) override {
    EEP_RETURN_IF_ERROR(check_peer("send", peer));
    return guarded("send", [&] {
      if (num_bytes == 0) return;
      auto buffer = context_->createUnboundBuffer(const_cast<void*>(data), num_bytes);
      buffer->send(peer, gloo::Slot::build(kSendRecvSlotPrefix, tag));
      buffer->waitSend(spec_.collective_timeout);
    });
  }

  Status recv(void* data, size_t num_bytes, int peer, uint32_t tag) override {
    EEP_RETURN_IF_ERROR(check_peer("recv", peer));
    return guarded("recv", [&] {
      if (num_bytes == 0) return;
      auto buffer = context_->createUnboundBuffer(data, num_bytes);
      buffer->recv(peer, gloo::Slot::build(kSendRecvSlotPrefix, tag));
      buffer->waitRecv(spec_.collective_timeout);
    });
  }

  Status all_to_all_v(const void* send, const size_t* send_bytes_per_peer, void* recv,
                      const size_t* recv_bytes_per_peer) override {
    const int num_ranks = spec_.size;
    const int my_rank = spec_.rank;
    if (send_bytes_per_peer[my_rank] != recv_bytes_per_peer[my_rank]) {
      return error(ErrorCode::kInvalidArgument, who() + " all_to_all_v: this rank sends itself " +
                                                    std::to_string(send_bytes_per_peer[my_rank]) +
                                                    " bytes but expects " +
                                                    std::to_string(recv_bytes_per_peer[my_rank]));
    }
    std::vector<size_t> send_offsets(num_ranks + 1, 0);
    std::vector<size_t> recv_offsets(num_ranks + 1, 0);
    for (int peer = 0; peer < num_ranks; ++peer) {
      send_offsets[peer + 1] = send_offsets[peer] + send_bytes_per_peer[peer];
      recv_offsets[peer + 1] = recv_offsets[peer] + recv_bytes_per_peer[peer];
    }
    return guarded("all_to_all_v", [&] {
      const auto deadline = Clock::now() + spec_.collective_timeout;
      const auto slot = gloo::Slot::build(kAllToAllVSlotPrefix, 0);
      std::unique_ptr<gloo::transport::UnboundBuffer> send_buffer;
      std::unique_ptr<gloo::transport::UnboundBuffer> recv_buffer;
      if (send_offsets[num_ranks] > 0) {
        send_buffer =
            context_->createUnboundBuffer(const_cast<void*>(send), send_offsets[num_ranks]);
      }
      if (recv_offsets[num_ranks] > 0) {
        recv_buffer = context_->createUnboundBuffer(recv, recv_offsets[num_ranks]);
      }
      // Post every receive before sending, so no peer's message waits for us to get to it.
      // Empty blocks travel as nothing at all: both sides know the size is zero.
      int num_recvs = 0;
      int num_sends = 0;
      for (int step = 1; step < num_ranks; ++step) {
        const int peer = (my_rank + num_ranks - step) % num_ranks;
        if (recv_bytes_per_peer[peer] == 0) continue;
        recv_buffer->recv(peer, slot, recv_offsets[peer], recv_bytes_per_peer[peer]);
        ++num_recvs;
      }
      for (int step = 1; step < num_ranks; ++step) {
        const int peer = (my_rank + step) % num_ranks;
        if (send_bytes_per_peer[peer] == 0) continue;
        send_buffer->send(peer, slot, send_offsets[peer], send_bytes_per_peer[peer]);
        ++num_sends;
      }
      if (send_bytes_per_peer[my_rank] > 0) {
        std::memcpy(static_cast<char*>(recv) + recv_offsets[my_rank],
                    static_cast<const char*>(send) + send_offsets[my_rank],
                    send_bytes_per_peer[my_rank]);
      }
      for (int idx = 0; idx < num_sends; ++idx) send_buffer->waitSend(remaining_until(deadline));
      for (int idx = 0; idx < num_recvs; ++idx) recv_buffer->waitRecv(remaining_until(deadline));
    });
  }

  Status all_reduce(float* data, size_t num_elements, ReduceOp op) override {
    return all_reduce_typed(data, num_elements, op);
  }
  Status all_reduce(int64_t* data, size_t num_elements, ReduceOp op) override {
    return all_reduce_typed(data, num_elements, op);
  }

  Status all_gather(const void* send, size_t num_bytes_per_rank, void* recv) override {
    return guarded("all_gather", [&] {
      if (num_bytes_per_rank == 0) return;
      char* my_block = static_cast<char*>(recv) + spec_.rank * num_bytes_per_rank;
      if (send != my_block) std::memcpy(my_block, send, num_bytes_per_rank);
      if (spec_.size == 1) return;
      // In place: the output holds this rank's block already.
      gloo::AllgatherOptions opts(context_);
      opts.setOutput(static_cast<char*>(recv), spec_.size * num_bytes_per_rank);
      opts.setTimeout(spec_.collective_timeout);
      gloo::allgather(opts);
    });
  }

  Status broadcast(void* data, size_t num_bytes, int root) override {
    if (root < 0 || root >= spec_.size) {
      return error(ErrorCode::kInvalidArgument,
                   who() + " broadcast: root " + std::to_string(root) + " is not a rank");
    }
    return guarded("broadcast", [&] {
      if (num_bytes == 0 || spec_.size == 1) return;
      gloo::BroadcastOptions opts(context_);
      opts.setOutput(static_cast<char*>(data), num_bytes);
      opts.setRoot(root);
      opts.setTimeout(spec_.collective_timeout);
      gloo::broadcast(opts);
    });
  }

  Status barrier() override {
    return guarded("barrier", [&] {
      if (spec_.size == 1) return;
      gloo::BarrierOptions opts(context_);
      opts.setTimeout(spec_.collective_timeout);
      gloo::barrier(opts);
    });
  }

  void destroy() override {
    if (state_ == State::kDestroyed) return;
    // The context owns the connections and must go before the device whose loop serves them;
    // the device's destructor joins its event-loop thread.
    context_.reset();
    device_.reset();
    state_ = State::kDestroyed;
    EEP_LOG_INFO(who() << " destroyed");
  }

  std::string who() const {
    return "[group " + spec_.name + " gen=" + std::to_string(spec_.generation) +
           " rank=" + std::to_string(spec_.rank) + "/" + std::to_string(spec_.size) + "]";
  }

 private:
  enum class State { kReady, kBroken, kDestroyed };

  Status check_peer(const char* op, int peer) const {
    if (peer < 0 || peer >= spec_.size || peer == spec_.rank) {
      return error(ErrorCode::kInvalidArgument, who() + " " + op + ": peer " +
                                                    std::to_string(peer) +
                                                    " is not another rank of this group");
    }
    return Status::ok();
  }

  template <typename T>
  Status all_reduce_typed(T* data, size_t num_elements, ReduceOp op) {
    return guarded("all_reduce", [&] {
      if (num_elements == 0 || spec_.size == 1) return;
      gloo::AllreduceOptions opts(context_);
      opts.setOutput(data, num_elements);
      opts.setReduceFunction(reduce_function<T>(op));
      opts.setTimeout(spec_.collective_timeout);
      gloo::allreduce(opts);
    });
  }

  // Runs one operation, turning Gloo's exceptions into a Status at this boundary. A failed
  // operation leaves the peers out of step, so the group is broken from then on.
  template <typename Body>
  Status guarded(const char* op, Body&& body) {
    if (state_ == State::kDestroyed) {
      return error(ErrorCode::kFailedPrecondition,
                   who() + " " + op + " after destroy(): use the current generation's group");
    }
    if (state_ == State::kBroken) {
      return error(
          ErrorCode::kFailedPrecondition,
          who() + " " + op + " on a broken group (" + broken_reason_ + "): build a new generation");
    }
    ErrorCode code = ErrorCode::kInternal;
    std::string what;
    try {
      body();
      return Status::ok();
    } catch (const gloo::IoException& e) {
      what = e.what();
      code = what.find("Timed out") != std::string::npos ? ErrorCode::kDeadlineExceeded
                                                         : ErrorCode::kUnavailable;
    } catch (const gloo::EnforceNotMet& e) {
      what = e.what();
    } catch (const std::exception& e) {
      what = e.what();
    }
    state_ = State::kBroken;
    broken_reason_ = std::string(op) + " failed: " + what;
    EEP_LOG_WARN(who() << " " << broken_reason_);
    return error(code, who() + " " + op + " failed (" + what +
                           "): a peer is gone or stuck; roll back or rebuild without it");
  }

  GroupSpec spec_;
  std::shared_ptr<gloo::transport::Device> device_;
  std::shared_ptr<gloo::rendezvous::Context> context_;
  State state_ = State::kReady;
  std::string broken_reason_;
};

}  // namespace

Result<std::unique_ptr<ProcessGroup>> create_gloo_group(const GroupSpec& spec) {
  EEP_RETURN_IF_ERROR(validate_group_spec(spec));
  const auto started = Clock::now();
  EEP_ASSIGN_OR_RETURN(auto store, StoreClient::connect(spec.store_host, spec.store_port));
  const std::string prefix = store_prefix(spec.generation, spec.name);

  std::shared_ptr<gloo::transport::Device> device;
  std::shared_ptr<gloo::rendezvous::Context> context;
  std::string failure;
  ErrorCode code = ErrorCode::kUnavailable;
  try {
    gloo::transport::tcp::attr attr;
    if (spec.bind_interface.empty()) {
      attr.hostname = spec.bind_host;
    } else {
      attr.iface = spec.bind_interface;
    }
    device = gloo::transport::tcp::CreateDevice(attr);
    context = std::make_shared<gloo::rendezvous::Context>(spec.rank, spec.size);
    context->setTimeout(spec.timeout);
    // PrefixStore joins with '/', so "g3/ep" gives keys "g3/ep/<rank>".
    gloo::rendezvous::PrefixStore prefixed(prefix.substr(0, prefix.size() - 1), *store);
    context->connectFullMesh(prefixed, device);
  } catch (const gloo::IoException& e) {
    failure = e.what();
    if (failure.find("deadline_exceeded") != std::string::npos ||
        failure.find("Timed out") != std::string::npos) {
      code = ErrorCode::kDeadlineExceeded;
    }
  } catch (const gloo::EnforceNotMet& e) {
    failure = e.what();
  } catch (const std::exception& e) {
    failure = e.what();
  }
  if (!failure.empty()) {
    context.reset();
    device.reset();
    return error(code, "building group " + spec.name + " of generation " +
                           std::to_string(spec.generation) + " as rank " +
                           std::to_string(spec.rank) + "/" + std::to_string(spec.size) +
                           " failed: " + failure);
  }
  store.reset();  // not needed any more; do not hold its threads and socket

  auto group = std::make_unique<GlooProcessGroup>(spec, std::move(device), std::move(context));
  // Once any rank is past this barrier every rank has finished its rendezvous, so rank 0 may
  // stop the store and peers may start using the group right away.
  Status connected = group->barrier();
  if (!connected.is_ok()) {
    return error(connected.code(), "building group " + spec.name + ": " + connected.message());
  }
  EEP_LOG_INFO(
      group->who()
      << " built in "
      << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count()
      << " ms");
  return std::unique_ptr<ProcessGroup>(std::move(group));
}

}  // namespace eep::worker
