// The CPU backend's ProcessGroup: Gloo over TCP (DESIGN.md section 5). Each group owns its own
// Gloo device (one event-loop thread), its connections and a StoreClient used only while it is
// built, so destroying a group leaves no thread or socket behind.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "eep/common/status.h"
#include "eep/worker/process_group.h"

namespace eep::worker {

// Every rank's rendezvous and every collective of a group must finish within this long unless
// the spec says otherwise: long enough for a loaded CPU fleet to reach a step boundary (the
// ranks of a new generation arrive at different steps), short enough that a dead peer turns
// into a rollback in seconds rather than hanging the fleet.
inline constexpr std::chrono::milliseconds kDefaultGroupTimeout{30000};

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
  // Bounds the rendezvous and every later operation of the group.
  std::chrono::milliseconds timeout = kDefaultGroupTimeout;
  // Address the transport listens on and advertises to peers (loopback unless multi-host).
  std::string bind_host = "127.0.0.1";
  // A network interface ("eth0") to use instead of bind_host, for multi-host fleets.
  std::string bind_interface;
};

// The spec's own consistency (rank within size, a name without '/', a positive timeout), checked
// by every implementation before it builds.
Status validate_group_spec(const GroupSpec& spec);

// Builds the group: rendezvous through the store, a full mesh of TCP connections, a barrier.
// Blocks until every rank of the spec arrived or spec.timeout passed (kDeadlineExceeded /
// kUnavailable naming what is missing).
Result<std::unique_ptr<ProcessGroup>> create_gloo_group(const GroupSpec& spec);

// The same on a helper thread, so generation g+1 is built while g serves.
PendingProcessGroup create_gloo_group_async(const GroupSpec& spec);

}  // namespace eep::worker
