// Sends the faults of --kill-at to workers while the requests run, and follows each in the
// coordinator's status until it recovered and the fleet is back at its target size. The pid of
// each target comes from status (the rank's ACTIVE worker): the local launcher's workers run on
// this host. A thread of its own, as ScaleDriver's, so that the requests' io_context never waits
// on the admin socket.
#pragma once

#include <string>
#include <vector>

#include "eep/bench/driver_thread.h"
#include "eep/bench/faults.h"
#include "eep/common/admin_client.h"

namespace eep::bench {

class FaultDriver {
 public:
  // Starts the thread; trigger times are seconds after `start`.
  FaultDriver(AdminConnection admin, std::vector<FaultTrigger> triggers,
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

  AdminConnection admin_;
  std::vector<FaultRecord> faults_;  // written by the thread only, read after finish
  DriverThread thread_;              // last: it runs run() on the members above
};

}  // namespace eep::bench
