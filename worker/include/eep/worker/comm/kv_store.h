// The rendezvous key-value store of a process group (DESIGN.md section 4): the group's rank 0
// serves it on a port the coordinator allocates; every rank of the group (rank 0 included)
// reaches it through a StoreClient. Gloo rendezvouses through it (StoreClient is a
// gloo::rendezvous::Store, because this Gloo has no TCPStore) and so will the NCCL unique id.
//
// Wire (ZeroMQ ROUTER on the server, DEALER per client), one request per round trip:
//   request  [request_id (8 bytes)][op][args...]
//   reply    [request_id (8 bytes)][reply code][values...]
// The request id lets a client drop a late reply to a request that it already gave up on.
// Keys are namespaced by the caller with a prefix per generation and group ("g3/ep/"), see
// store_prefix(); delete_prefix() frees a retired generation's keys.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gloo/rendezvous/store.h>
#include <zmq.hpp>

#include "eep/common/status.h"

namespace eep::worker {

// "g3/ep/": the key prefix of group `group_name` in generation `generation`.
std::string store_prefix(uint64_t generation, const std::string& group_name);

// Why a store port may be taken: "" unless `port` lies in the kernel's ephemeral range, given as
// the text of /proc/sys/net/ipv4/ip_local_port_range ("32768\t60999\n"), from which outgoing
// connections (Gloo's pairs among them) take their local ports.
std::string ephemeral_port_hint(int port, const std::string& ip_local_port_range);

// Serves the store from a background thread until destroyed. Thread-safe to destroy from any
// thread; the destructor stops and joins the thread and closes the socket.
class StoreServer {
 public:
  // Binds tcp://host:port. port 0 binds an ephemeral port (read it back with port()).
  static Result<std::unique_ptr<StoreServer>> start(const std::string& host, int port);

  ~StoreServer();
  StoreServer(const StoreServer&) = delete;
  StoreServer& operator=(const StoreServer&) = delete;

  // The endpoint actually bound, e.g. "tcp://127.0.0.1:41234".
  const std::string& endpoint() const { return endpoint_; }
  int port() const { return port_; }

  // How often the serving thread looks at its stop flag and at the deadlines of parked waits:
  // bounds how long the destructor takes and how late a timed-out wait is answered.
  static constexpr std::chrono::milliseconds kPollInterval{20};
  // Largest message accepted; rendezvous values are addresses and ids (bytes to kilobytes), so
  // anything near this is a bug or a stranger, refused by ZeroMQ before it costs memory.
  static constexpr int64_t kMaxMessageBytes = 16 << 20;

 private:
  StoreServer() = default;
  void serve();

  zmq::context_t context_{1};
  zmq::socket_t socket_;
  std::string endpoint_;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// One connection to a StoreServer. Thread-safe (one request at a time, under a lock). Every
// operation is bounded: a server that is gone or does not answer gives kUnavailable within
// kRequestTimeout (or the caller's timeout, when shorter), never a hang.
class StoreClient : public gloo::rendezvous::Store {
 public:
  // endpoint: "tcp://host:port". Connecting is lazy (ZeroMQ), so a wrong address shows up as
  // kUnavailable on the first request.
  static Result<std::unique_ptr<StoreClient>> connect(const std::string& endpoint);
  static Result<std::unique_ptr<StoreClient>> connect(const std::string& host, int port);

  ~StoreClient() override;
  StoreClient(const StoreClient&) = delete;
  StoreClient& operator=(const StoreClient&) = delete;

  const std::string& endpoint() const { return endpoint_; }

  // The Status API, for our own uses (NCCL unique id, agreement on small values).
  Status set_value(const std::string& key, const std::string& value);
  // The value, or kNotFound at once when the key is not set (does not wait).
  Result<std::string> get_value(const std::string& key);
  // Waits until the key exists (or kDeadlineExceeded after timeout), then returns its value.
  Result<std::string> wait_value(const std::string& key, std::chrono::milliseconds timeout);
  // True when every key is set (does not wait).
  Result<bool> check(const std::vector<std::string>& keys);
  // Until every key is set; kDeadlineExceeded (naming the missing keys) after timeout.
  Status wait_keys(const std::vector<std::string>& keys, std::chrono::milliseconds timeout);
  // Adds delta to the counter at key (absent counts as 0) atomically; returns the new value.
  Result<int64_t> add(const std::string& key, int64_t delta);
  // Deletes every key that starts with prefix; returns how many.
  Result<int64_t> delete_prefix(const std::string& prefix);

  // gloo::rendezvous::Store. Gloo expects exceptions: failures throw gloo::IoException with the
  // Status message (the group code catches them at its boundary). get() waits for the key up to
  // kGlooGetTimeout, because Gloo calls get() right after wait() and some callers skip wait().
  void set(const std::string& key, const std::vector<char>& data) override;
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override;

  // One round trip to a live server on loopback takes well under a millisecond; a server that
  // has not answered in 2 s is gone or wedged, and waiting longer only delays the rollback.
  static constexpr std::chrono::milliseconds kRequestTimeout{2000};
  // A wait is served in slices this long (the server parks it and answers "not yet" at the end
  // of a slice), so a server that dies during a long wait is noticed within about one slice.
  static constexpr std::chrono::milliseconds kWaitSlice{500};
  // Wait used by gloo's wait(keys) without a timeout and by get(): as long as Gloo's own default.
  static constexpr std::chrono::milliseconds kGlooGetTimeout{30000};

 private:
  StoreClient() = default;
  // Sends one request and returns the reply frames after the request id; kUnavailable when no
  // reply comes within reply_timeout.
  Result<std::vector<std::string>> request(const std::vector<std::string>& frames,
                                           std::chrono::milliseconds reply_timeout);
  void reconnect();

  std::mutex mutex_;
  zmq::context_t context_{1};
  std::optional<zmq::socket_t> socket_;
  std::string endpoint_;
  uint64_t next_request_id_ = 1;
};

}  // namespace eep::worker
