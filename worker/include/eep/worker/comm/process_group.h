// Communicators as objects (DESIGN.md section 5): a ProcessGroup is one group (the EP group,
// the control group) of one generation. It is built from (generation, name, my rank, size,
// store endpoint), can be built in the background while another one serves, and is destroyed
// explicitly. Gloo (CPU) and NCCL (GPU) implement the same interface.
//
// Contract for every implementation:
// - Calls on one group come from one thread at a time (the engine's loop), and every rank calls
//   the collectives of a group in the same order. Two groups are independent: generation g+1
//   may be built (on another thread) while g carries traffic.
// - Buffers are host memory for Gloo, device memory for NCCL; sizes are in bytes unless the
//   name says elements.
// - Expected failures (a peer gone, a timeout) come back as a Status: kUnavailable or
//   kDeadlineExceeded, with the group, generation and operation in the message. After such a
//   failure the group is broken (its peers disagree on where they are): every later call gives
//   kFailedPrecondition, and the caller rebuilds a new generation without the dead rank.
// - destroy() releases everything (connections, threads, device memory); afterwards every call
//   is a kFailedPrecondition error. The destructor destroys if needed.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "eep/common/status.h"

namespace eep::worker {

enum class ReduceOp { kSum, kMax, kMin };
std::string_view to_string(ReduceOp op);

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual uint64_t generation() const = 0;
  // The group's name within its generation: "ep", "control".
  virtual const std::string& name() const = 0;
  // False once destroy() ran or an operation failed; such a group only accepts destroy().
  virtual bool usable() const = 0;

  // Point to point. A send and its recv name the same tag and the same num_bytes; messages of
  // one (peer, tag) arrive in order. Blocking: returns when the buffer may be reused.
  virtual Status send(const void* data, size_t num_bytes, int peer, uint32_t tag) = 0;
  virtual Status recv(void* data, size_t num_bytes, int peer, uint32_t tag) = 0;

  // Each rank sends send_bytes_per_peer[p] bytes to peer p and receives recv_bytes_per_peer[p]
  // from p (both arrays have size() entries; zeros allowed). Buffers are contiguous, the block
  // for peer p at the prefix sum of the sizes before p. recv_bytes_per_peer[p] must equal what p
  // sends here: the MoE dispatch exchanges counts first (an all_to_all_v of fixed sizes).
  virtual Status all_to_all_v(const void* send, const size_t* send_bytes_per_peer, void* recv,
                              const size_t* recv_bytes_per_peer) = 0;

  // In place over num_elements values.
  virtual Status all_reduce(float* data, size_t num_elements, ReduceOp op) = 0;
  virtual Status all_reduce(int64_t* data, size_t num_elements, ReduceOp op) = 0;

  // recv (size() * num_bytes_per_rank bytes) gets rank r's send block at r * num_bytes_per_rank.
  // send may alias recv + rank() * num_bytes_per_rank.
  virtual Status all_gather(const void* send, size_t num_bytes_per_rank, void* recv) = 0;

  // root's num_bytes at data reach every rank's data.
  virtual Status broadcast(void* data, size_t num_bytes, int root) = 0;

  virtual Status barrier() = 0;

  // Releases the group. Idempotent. Peers still using the group see kUnavailable.
  virtual void destroy() = 0;
};

// Every rank's rendezvous and every collective of a group must finish within this long unless
// the spec says otherwise: long enough for a loaded CPU fleet to reach a step boundary (the
// ranks of a new generation arrive at different steps), short enough that a dead peer turns
// into a rollback in seconds rather than hanging the fleet.
inline constexpr std::chrono::milliseconds kDefaultGroupTimeout{30000};
// Every collective, send and receive of a built group must finish within this long: a peer that
// died or hangs turns into an error here, and the rank abandons the generation
// (docs/fault_tolerance.md). Ranks of a built group meet at every step, so a step's duration
// plus some slack is enough.
inline constexpr std::chrono::milliseconds kDefaultCollectiveTimeout{10000};

struct GroupSpec {
  uint64_t generation = 0;
  std::string name;  // "ep", "control": with generation, the key prefix in the store
  int rank = -1;
  int size = 0;
  // The group's StoreServer (served by its rank 0, port from the coordinator). Keys live under
  // store_prefix(generation, name). The store is needed only until create returns on any rank
  // (the build ends with a barrier, so by then every rank has finished its rendezvous).
  std::string store_host = "127.0.0.1";
  int store_port = 0;
  // Bounds the rendezvous (create) and the teardown of the group.
  std::chrono::milliseconds timeout = kDefaultGroupTimeout;
  // Bounds every operation of the built group.
  std::chrono::milliseconds collective_timeout = kDefaultCollectiveTimeout;
  // Address the transport listens on and advertises to peers (loopback unless multi-host).
  std::string bind_host = "127.0.0.1";
  // A network interface ("eth0") to use instead of bind_host, for multi-host fleets.
  std::string bind_interface;
};

// The spec's own consistency (rank within size, a name without '/', a positive timeout), checked
// by every implementation before it builds.
Status validate_group_spec(const GroupSpec& spec);

}  // namespace eep::worker
