// Per-rank serving metrics (docs/serving.md): what each ACTIVE rank runs, queues and holds in its
// KV cache, the tokens it generated, and the time its steps waited in the lockstep agreement for
// the slowest rank (the imbalance cost). The coordinator's loop feeds it the workers' last
// reports; a rank that left has its gauges set to 0.
#pragma once

#include <set>
#include <vector>

#include "eep/common/protocol.h"
#include "eep/coordinator/metrics.h"

namespace eep::coordinator {

class RankMetrics {
 public:
  explicit RankMetrics(MetricsRegistry& registry) : registry_(registry) {}

  // The ACTIVE workers (state, rank, load, generated tokens as in admin status).
  void update_from(const std::vector<protocol::WorkerInfo>& active);

 private:
  MetricsRegistry& registry_;
  std::set<int> ranks_seen_;
};

}  // namespace eep::coordinator
