// Computes EPLB plans off the coordinator's event loop (docs/eplb.md, "Planning off the loop"):
// the loop hands a snapshot of the window to a thread of this class's own and picks the result up
// on a later iteration; no iteration waits for a plan. The planning threads run at a lower CPU
// priority (nice 10) than the loop, which relays every token.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "eep/common/placement.h"
#include "eep/common/status.h"
#include "eep/coordinator/eplb.h"

namespace eep::coordinator {

// A load planned beside the real one, to measure the loop while a large plan is computed on a
// small test fleet (--eplb-test-load: the first case of a cases.json-format file). Its plan is
// thrown away.
struct EplbTestLoad {
  LoadMatrix load;
  EplbConfig config;
};
Result<EplbTestLoad> read_eplb_test_load(const std::string& path);

// What to plan: the window's logical load from the current placement.
struct PlanRequest {
  uint64_t request_id = 0;  // EplbState's; a result is for the request of the same id
  int64_t generation = 0;
  ExpertTokenCounts load;
  Placement current;
  EplbConfig config;
  MigrationOptions migration;
  uint64_t window_steps = 0;
  bool forced = false;  // an operator's eplb_rebalance: sent whatever its gain
  std::shared_ptr<const EplbTestLoad> test_load;  // also planned when set
};

struct PlanResult {
  uint64_t request_id = 0;
  int64_t generation = 0;
  uint64_t window_steps = 0;
  bool forced = false;
  Result<MigrationPlan> plan = error(ErrorCode::kInternal, "not planned");
  double seconds = 0;  // planning time, the test load's included
};

// The plan of `request` (its test load left aside), as the planner's thread computes it; pure,
// so tests compute the same answer on their own thread.
PlanResult plan(const PlanRequest& request);

class EplbPlanner {
 public:
  EplbPlanner() = default;
  ~EplbPlanner();  // waits for a plan in progress
  EplbPlanner(const EplbPlanner&) = delete;
  EplbPlanner& operator=(const EplbPlanner&) = delete;

  // Starts planning `request` on a new thread. One at a time: only when !busy().
  void submit(PlanRequest request);
  // A request was submitted and its result not taken yet.
  bool busy() const { return thread_.joinable(); }
  // The result once it is ready (then no longer busy); nullopt while planning or idle. Never
  // blocks.
  std::optional<PlanResult> take();

 private:
  std::thread thread_;
  std::atomic<bool> done_{false};
  PlanResult result_;  // written by thread_ before done_, read after
};

}  // namespace eep::coordinator
