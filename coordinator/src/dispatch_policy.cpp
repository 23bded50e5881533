#include "eep/coordinator/dispatch_policy.h"

#include <algorithm>
#include <climits>

namespace eep::coordinator {

int dispatch_limit(const DispatchTarget& target, const DispatchOptions& options) {
  if (target.max_num_seqs <= 0) return INT32_MAX;
  const int depth =
      options.queue_depth >= 0 ? options.queue_depth : std::max(2, target.max_num_seqs / 4);
  return target.max_num_seqs + depth;
}

std::optional<size_t> pick_target(const std::vector<DispatchTarget>& targets,
                                  const DispatchOptions& options) {
  std::optional<size_t> best;
  int64_t best_room = 0;
  for (size_t idx = 0; idx < targets.size(); ++idx) {
    const int64_t room = int64_t{dispatch_limit(targets[idx], options)} - targets[idx].num_assigned;
    if (room > best_room) {  // strictly more: ties go to the lower rank
      best = idx;
      best_room = room;
    }
  }
  return best;
}

std::vector<RunningMove> move_running_plan(const std::vector<DispatchTarget>& targets,
                                           const std::vector<RunningRequest>& running,
                                           const DispatchOptions& options) {
  std::vector<RunningMove> moves;
  if (!options.move_running || targets.size() < 2) return moves;
  int64_t total = 0;
  for (const DispatchTarget& target : targets) total += target.num_assigned;
  // A rank above `high` gives, a rank below `low` takes: the mean rounded both ways, so ranks
  // that differ by one request are left alone.
  const int64_t n = static_cast<int64_t>(targets.size());
  const int64_t low = total / n;
  const int64_t high = (total + n - 1) / n;
  std::vector<int64_t> load;
  for (const DispatchTarget& target : targets) load.push_back(target.num_assigned);

  std::vector<const RunningRequest*> candidates;
  for (const RunningRequest& request : running) {
    const int64_t remaining = int64_t{request.max_tokens} - request.num_generated;
    const double reprefill = double(request.num_prompt_tokens) + request.num_generated;
    if (remaining < options.move_min_remaining) continue;
    if (reprefill > options.max_reprefill_per_remaining * double(remaining)) continue;
    if (request.target_idx >= targets.size()) continue;
    candidates.push_back(&request);
  }
  // The most tokens left first (the largest gain), then the cheapest re-prefill.
  std::stable_sort(
      candidates.begin(), candidates.end(), [](const RunningRequest* a, const RunningRequest* b) {
        const int64_t left_a = int64_t{a->max_tokens} - a->num_generated;
        const int64_t left_b = int64_t{b->max_tokens} - b->num_generated;
        if (left_a != left_b) return left_a > left_b;
        return a->num_prompt_tokens + a->num_generated < b->num_prompt_tokens + b->num_generated;
      });
  for (const RunningRequest* request : candidates) {
    const size_t from = request->target_idx;
    if (load[from] <= high) continue;
    std::optional<size_t> to;
    for (size_t idx = 0; idx < targets.size(); ++idx) {
      if (load[idx] >= low || load[idx] >= dispatch_limit(targets[idx], options)) continue;
      if (!to || load[idx] < load[*to]) to = idx;
    }
    if (!to) break;
    moves.push_back({request->request_id, from, *to});
    --load[from];
    ++load[*to];
  }
  return moves;
}

}  // namespace eep::coordinator
