// The thread of a driver that acts on the fleet while the requests run (ScaleDriver, FaultDriver):
// it runs the driver's body once, which waits for its trigger times through
// wait_until_or_finished(), and learns there when the requests ended (finish()).
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "eep/bench/http_client.h"

namespace eep::bench {

class DriverThread {
 public:
  // `start`: the run's clock origin (the records' times count from it too).
  explicit DriverThread(BenchClock::time_point start) : start_(start) {}
  ~DriverThread() { finish(); }
  DriverThread(const DriverThread&) = delete;
  DriverThread& operator=(const DriverThread&) = delete;

  void run(std::function<void()> body) { thread_ = std::thread(std::move(body)); }
  // The requests are done: wakes the body and waits for it to return. Idempotent.
  void finish() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      finished_ = true;
    }
    finished_changed_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  // Waits until `until` or finish(); true when finish() was called.
  bool wait_until_or_finished(BenchClock::time_point until) {
    std::unique_lock<std::mutex> lock(mutex_);
    return finished_changed_.wait_until(lock, until, [this] { return finished_; });
  }
  BenchClock::time_point start() const { return start_; }
  double seconds_now() const {
    return std::chrono::duration<double>(BenchClock::now() - start_).count();
  }
  // When `at_s` seconds after the start come.
  BenchClock::time_point at(double at_s) const {
    return start_ +
           std::chrono::duration_cast<BenchClock::duration>(std::chrono::duration<double>(at_s));
  }

 private:
  BenchClock::time_point start_;
  std::mutex mutex_;
  std::condition_variable finished_changed_;
  bool finished_ = false;  // under mutex_
  std::thread thread_;
};

}  // namespace eep::bench
