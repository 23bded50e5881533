// A process group built on a helper thread, for tests that start several ranks' builds from one
// thread (the engine builds its groups on its own helper thread).
#pragma once

#include <chrono>
#include <future>
#include <memory>
#include <utility>

#include "eep/common/check.h"
#include "eep/worker/comm/process_group.h"

namespace eep::worker {

// A group being built on a helper thread. ready() never blocks (the engine polls it between
// steps); wait() blocks until the build ends (bounded by the group's timeout) and may be called
// once. The destructor waits for an unfinished build, then destroys the group if nobody took it.
class PendingProcessGroup {
 public:
  explicit PendingProcessGroup(std::future<Result<std::unique_ptr<ProcessGroup>>> future)
      : future_(std::move(future)) {}
  PendingProcessGroup(PendingProcessGroup&&) = default;
  PendingProcessGroup& operator=(PendingProcessGroup&&) = default;

  bool valid() const { return future_.valid(); }
  bool ready() const {
    return future_.valid() &&
           future_.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  }
  Result<std::unique_ptr<ProcessGroup>> wait() {
    EEP_CHECK_MSG(future_.valid(), "PendingProcessGroup::wait called twice");
    return future_.get();
  }

 private:
  std::future<Result<std::unique_ptr<ProcessGroup>>> future_;
};

// Runs `create` (returning Result<std::unique_ptr<ProcessGroup>>) on a helper thread.
template <typename Create>
PendingProcessGroup build_in_background(Create create) {
  return PendingProcessGroup(std::async(std::launch::async, std::move(create)));
}

}  // namespace eep::worker
