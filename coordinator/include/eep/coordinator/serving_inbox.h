// The coordinator's ServingFrontend: HTTP threads submit and cancel here; the event loop drains
// the inbox (woken through an eventfd it polls), routes, and publishes what the HTTP side reads
// (readiness, model info, stats). The only state shared between threads lives here, under one
// mutex; the router and membership stay owned by the event loop.
#pragma once

#include <atomic>
#include <deque>
#include <mutex>
#include <variant>

#include "eep/coordinator/serving.h"

namespace eep::coordinator {

class ServingInbox final : public ServingFrontend {
 public:
  struct Submit {
    CompletionRequest request;
    CompletionCallback callback;
  };
  struct Cancel {
    uint64_t request_id;
  };
  using Item = std::variant<Submit, Cancel>;

  // max_in_flight: requests accepted and not finished, beyond which submit() says 429.
  explicit ServingInbox(int64_t max_in_flight);
  ~ServingInbox() override;

  // ServingFrontend (any thread).
  Result<uint64_t> submit(CompletionRequest request, CompletionCallback on_event) override;
  void cancel(uint64_t request_id) override;
  ModelInfo model_info() const override;
  bool ready() const override { return ready_.load(); }
  ServingStats stats() const override;

  // Event loop side.
  int wake_fd() const { return wake_fd_; }
  std::deque<Item> drain();  // also clears the eventfd
  // ready: a worker serves (GET /health); accepting: submit() takes requests, also while they are
  // held for a fleet that forms again (Router::set_hold).
  void publish(bool ready, bool accepting, const ModelInfo& info, const ServingStats& stats);
  // A request accepted by submit() has finished (the loop calls this once per request).
  void finished_one() { in_flight_.fetch_sub(1); }

 private:
  void notify();

  const int64_t max_in_flight_;
  int wake_fd_ = -1;
  std::atomic<uint64_t> next_id_{1};
  std::atomic<int64_t> in_flight_{0};
  std::atomic<bool> ready_{false};
  std::atomic<bool> accepting_{false};
  mutable std::mutex mutex_;
  std::deque<Item> items_;  // guarded by mutex_
  ModelInfo info_;          // guarded by mutex_
  ServingStats stats_;      // guarded by mutex_
};

}  // namespace eep::coordinator
