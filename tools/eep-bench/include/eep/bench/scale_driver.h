// Sends the scales of --scale-at / --scale-to to the coordinator's admin socket while the
// requests run, and follows each accepted one in `status` until its outcome. It runs on a thread
// of its own: the admin client is a blocking ZeroMQ socket, and the requests' io_context thread
// must never wait on it (a stalled admin call would show up as a token gap of every stream).
#pragma once

#include <string>
#include <vector>

#include "eep/bench/driver_thread.h"
#include "eep/bench/scaling.h"
#include "eep/common/admin_client.h"

namespace eep::bench {

class ScaleDriver {
 public:
  // Starts the thread. Trigger times are seconds after `start`, the time the run's clock counts
  // from; the records' times use the same origin.
  ScaleDriver(AdminConnection admin, std::vector<ScaleTrigger> triggers,
              BenchClock::time_point start);
  ~ScaleDriver();
  ScaleDriver(const ScaleDriver&) = delete;
  ScaleDriver& operator=(const ScaleDriver&) = delete;

  // Called once the requests are done: triggers not yet due are not sent (kNotSent); a scale
  // in flight is still followed to its outcome (bounded by kOutcomeWait). Returns one record
  // per trigger, in time order. Call once.
  std::vector<ScaleRecord> finish();

  // Longer than the coordinator's own stage deadlines (default 60 s each), after which it rolls
  // back: an outcome later than this means the coordinator is not progressing at all.
  static constexpr std::chrono::seconds kOutcomeWait{600};

 private:
  void run();

  AdminConnection admin_;
  std::vector<ScaleRecord> scales_;  // written by the thread only, read after finish
  DriverThread thread_;              // last: it runs run() on the members above
};

}  // namespace eep::bench
