// The CPU backend's ProcessGroup: Gloo over TCP (DESIGN.md section 5). Each group owns its own
// Gloo device (one event-loop thread), its connections and a StoreClient used only while it is
// built, so destroying a group leaves no thread or socket behind.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "eep/common/status.h"
#include "eep/worker/comm/process_group.h"

namespace eep::worker {

// Builds the group: rendezvous through the store, a full mesh of TCP connections, a barrier.
// Blocks until every rank of the spec arrived or spec.timeout passed (kDeadlineExceeded /
// kUnavailable naming what is missing).
Result<std::unique_ptr<ProcessGroup>> create_gloo_group(const GroupSpec& spec);

// The same on a helper thread, so generation g+1 is built while g serves.

}  // namespace eep::worker
