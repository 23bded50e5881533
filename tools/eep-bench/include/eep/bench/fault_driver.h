// Sends the faults of --kill-at to workers while the requests run, and follows each in the
// coordinator's status until it recovered and the fleet is back at its target size. The pid of
// each target comes from status (the rank's ACTIVE worker): the local launcher's workers run on
// this host. A thread of its own, as ScaleDriver's, so that the requests' io_context never waits
// on the admin socket.
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "eep/bench/faults.h"
#include "eep/bench/http_client.h"

namespace eep::bench {

class FaultDriver {
 public:
  // Starts the thread; trigger times are seconds after `start`.
  FaultDriver(std::string admin, std::string token, std::vector<FaultTrigger> triggers,
              BenchClock::time_point start);
  ~FaultDriver();
  FaultDriver(const FaultDriver&) = delete;
  FaultDriver& operator=(const FaultDriver&) = delete;

  // Called once the requests are done: faults not yet due are not sent; one sent is followed
  // until the fleet is back at its size (at most kOutcomeWait). One record per fault time.
  std::vector<FaultRecord> finish();

  static constexpr std::chrono::seconds kOutcomeWait{120};

 private:
  void run();
  bool wait_until_or_finished(BenchClock::time_point until);
  double seconds_now() const;

  std::string admin_;
  std::string token_;
  BenchClock::time_point start_;
  std::vector<FaultRecord> faults_;  // written by the thread only, read after join
  std::mutex mutex_;
  std::condition_variable finished_changed_;
  bool finished_ = false;  // under mutex_
  std::thread thread_;
};

}  // namespace eep::bench
