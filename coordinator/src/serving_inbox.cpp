#include "eep/coordinator/serving_inbox.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <random>

namespace eep::coordinator {

ServingInbox::ServingInbox(int64_t max_in_flight) : max_in_flight_(max_in_flight) {
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  EEP_CHECK(wake_fd_ >= 0);
}

ServingInbox::~ServingInbox() {
  ::close(wake_fd_);
}

void ServingInbox::notify() {
  const uint64_t one = 1;
  ssize_t written = ::write(wake_fd_, &one, sizeof(one));
  (void)written;  // a full counter still wakes the loop
}

Result<uint64_t> ServingInbox::submit(CompletionRequest request, CompletionCallback on_event) {
  if (!accepting_.load()) {
    return error(ErrorCode::kUnavailable, "no worker is serving yet; retry shortly");
  }
  if (in_flight_.fetch_add(1) >= max_in_flight_) {
    in_flight_.fetch_sub(1);
    return error(
        ErrorCode::kResourceExhausted,
        "too many requests in flight (" + std::to_string(max_in_flight_) + "); retry later");
  }
  request.id = next_id_.fetch_add(1);
  if (!request.seed) {
    // Recorded with the request, so a resubmitted request samples the same numbers.
    thread_local std::mt19937_64 rng(std::random_device{}());
    request.seed = rng();
  }
  const uint64_t id = request.id;
  {
    std::lock_guard lock(mutex_);
    items_.push_back(Submit{std::move(request), std::move(on_event)});
  }
  notify();
  return id;
}

void ServingInbox::cancel(uint64_t request_id) {
  {
    std::lock_guard lock(mutex_);
    items_.push_back(Cancel{request_id});
  }
  notify();
}

ModelInfo ServingInbox::model_info() const {
  std::lock_guard lock(mutex_);
  return info_;
}

ServingStats ServingInbox::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

std::deque<ServingInbox::Item> ServingInbox::drain() {
  uint64_t count = 0;
  ssize_t read = ::read(wake_fd_, &count, sizeof(count));
  (void)read;  // EAGAIN when nothing was signalled
  std::lock_guard lock(mutex_);
  std::deque<Item> items;
  items.swap(items_);
  return items;
}

void ServingInbox::publish(bool ready, bool accepting, const ModelInfo& info,
                           const ServingStats& stats) {
  {
    std::lock_guard lock(mutex_);
    info_ = info;
    stats_ = stats;
  }
  ready_.store(ready);
  accepting_.store(accepting);
}

}  // namespace eep::coordinator
