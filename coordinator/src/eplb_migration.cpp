// Plans that move little (docs/eplb.md, "Plans that move little"): per layer, a local search from
// the current placement that changes one or two slots at a time, and the plan from scratch with
// its ranks matched to the current ones when the search falls short.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "eep/common/check.h"
#include "eep/coordinator/assignment.h"
#include "eep/coordinator/eplb.h"
#include "eplb_internal.h"

namespace eep::coordinator {
namespace {

using eplb_internal::LayerShape;

// Bounds the search per layer; each accepted change strictly lowers (max rank load, sum of
// squares), so it ends on its own well before this.
constexpr int kMaxChangesPerSlot = 4;

std::vector<double> rank_loads(const std::vector<double>& layer_load, const std::vector<int>& row,
                               const LayerShape& shape) {
  std::vector<int> count(shape.num_experts, 0);
  for (int logical : row) ++count[logical];
  std::vector<double> loads(shape.num_ranks, 0.0);
  for (size_t slot = 0; slot < row.size(); ++slot)
    loads[slot / shape.slots_per_rank] += layer_load[row[slot]] / count[row[slot]];
  return loads;
}

double layer_balancedness(const std::vector<double>& layer_load, const std::vector<int>& row,
                          const LayerShape& shape) {
  const std::vector<double> loads = rank_loads(layer_load, row, shape);
  const double peak = *std::max_element(loads.begin(), loads.end());
  const double mean = std::accumulate(loads.begin(), loads.end(), 0.0) / shape.num_ranks;
  return peak > 0 ? mean / peak : 1.0;
}

int num_changed(const std::vector<int>& from, const std::vector<int>& to) {
  int changed = 0;
  for (size_t slot = 0; slot < from.size(); ++slot) changed += from[slot] != to[slot];
  return changed;
}

// The node each expert lives on when `row` keeps every expert group on one node (what the
// hierarchical policy promises); empty otherwise. With one node, every expert is on node 0.
std::vector<int> node_of_experts(const std::vector<int>& row, const LayerShape& shape) {
  std::vector<int> node_of_group(shape.num_groups, -1);
  for (size_t slot = 0; slot < row.size(); ++slot) {
    const int node = shape.node_of_rank(static_cast<int>(slot) / shape.slots_per_rank);
    int& group_node = node_of_group[row[slot] / shape.group_size()];
    if (group_node >= 0 && group_node != node) return {};
    group_node = node;
  }
  std::vector<int> node_of_expert(shape.num_experts);
  for (int e = 0; e < shape.num_experts; ++e)
    node_of_expert[e] = node_of_group[e / shape.group_size()];
  return node_of_expert;
}

// Local search over the slots of one layer, from the current row: each step applies the change
// with the most balance per changed slot among (a) exchanging the experts of a slot on the
// heaviest rank and a slot on another rank (of the same node), (b) turning a slot of an expert
// with >= 2 replicas into a replica of another expert (of that slot's node), one side of it on
// the heaviest rank. Only changes that lower (max rank load, sum of squares) are taken, so it
// ends; it stops once the heaviest rank is at or below target_peak or the next change would take
// the changed slots past max_changed.
class SlotSearch {
 public:
  // Starts at `start` (default: the current row); changes are counted against `current`.
  SlotSearch(const std::vector<double>& layer_load, const std::vector<int>& current,
             const LayerShape& shape, std::vector<int> node_of_expert, bool per_slot,
             const std::vector<int>* start = nullptr)
      : load_(layer_load),
        shape_(shape),
        original_(current),
        row_(start ? *start : current),
        node_of_expert_(std::move(node_of_expert)),
        per_slot_(per_slot) {
    count_.assign(shape.num_experts, 0);
    slots_of_.assign(shape.num_experts, {});
    for (int slot = 0; slot < static_cast<int>(row_.size()); ++slot) {
      ++count_[row_[slot]];
      slots_of_[row_[slot]].push_back(slot);
    }
    rank_load_ = rank_loads(load_, row_, shape);
    position_.assign(shape.num_ranks, -1);
    num_changed_ = num_changed(original_, row_);
    const double total = std::accumulate(load_.begin(), load_.end(), 0.0);
    eps_ = 1e-12 * std::max(1.0, total);
  }

  // Changes slots of experts with more replicas than `wanted` into replicas of experts with
  // fewer, one at a time, each time the change that leaves (max rank load, sum of squares) the
  // lowest: the replica counts of the plan from scratch, reached with as few changes as they
  // need, before run() searches from there.
  void adopt_counts(const std::vector<int>& wanted) {
    const int num_slots = static_cast<int>(row_.size());
    for (int step = 0; step < num_slots; ++step) {
      sort_ranks();
      std::pair<double, double> best_score;
      int best_slot = -1, best_to = -1;
      for (int slot = 0; slot < num_slots; ++slot) {
        const int from = row_[slot];
        if (count_[from] <= wanted[from] || count_[from] < 2) continue;
        const int node = shape_.node_of_rank(rank_of(slot));
        for (int to = 0; to < shape_.num_experts; ++to) {
          if (count_[to] >= wanted[to] || node_of_expert_[to] != node) continue;
          replica_loads(slot, to);
          const auto candidate = score(loads_);
          if (best_slot < 0 || candidate < best_score) {
            best_score = candidate;
            best_slot = slot;
            best_to = to;
          }
        }
      }
      if (best_slot < 0) return;
      Change change;
      change.slot_a = best_slot;
      change.to = best_to;
      change.cost = changed_if(best_slot, best_to);
      replica_loads(best_slot, best_to);
      change.loads = loads_;
      apply(change);
    }
  }

  // From a row at or below target_peak (the matched plan from scratch): gives slots back their
  // current expert, one or two at a time, each time the change that gives back the most slots
  // (then leaves the lowest peak) while the heaviest rank stays at or below target_peak.
  const std::vector<int>& give_back(double target_peak) {
    const int num_slots = static_cast<int>(row_.size());
    for (int step = 0; step < num_slots; ++step) {
      sort_ranks();
      int best_cost = 0;
      double best_peak = 0;
      Change best;
      auto consider = [&](Change& change) {
        const double peak = score(loads_).first;
        if (peak > target_peak || change.cost > -1) return;
        if (best.slot_a >= 0 &&
            (change.cost > best_cost || (change.cost == best_cost && peak >= best_peak))) {
          return;
        }
        best_cost = change.cost;
        best_peak = peak;
        best = change;
        best.loads = loads_;
      };
      for (int slot = 0; slot < num_slots; ++slot) {
        const int want = original_[slot];
        if (row_[slot] == want) continue;
        const int node = shape_.node_of_rank(rank_of(slot));
        // (a) the slot turns back into its expert.
        if (count_[row_[slot]] >= 2 && node_of_expert_[want] == node) {
          Change change;
          change.slot_a = slot;
          change.to = want;
          change.cost = changed_if(slot, want);
          replica_loads(slot, want);
          consider(change);
        }
        // (b) it exchanges experts with a slot that holds its expert now.
        for (int other : slots_of_[want]) {
          if (rank_of(other) == rank_of(slot) || !same_node(rank_of(other), rank_of(slot))) {
            continue;
          }
          Change change;
          change.slot_a = slot;
          change.slot_b = other;
          change.cost = changed_if(slot, row_[other]) + changed_if(other, row_[slot]);
          const double delta = weight(row_[slot]) - weight(row_[other]);
          begin_loads();
          add_load(rank_of(slot), -delta);
          add_load(rank_of(other), delta);
          consider(change);
        }
      }
      if (best.slot_a < 0) break;
      apply(best);
    }
    return row_;
  }

  const std::vector<int>& run(double target_peak, int max_changed) {
    target_peak_ = target_peak;
    const int num_slots = static_cast<int>(row_.size());
    for (int step = 0; step < kMaxChangesPerSlot * num_slots; ++step) {
      sort_ranks();
      if (rank_load_[by_load_[0]] <= target_peak) break;
      if (!apply_best(max_changed)) break;
    }
    return row_;
  }

 private:
  struct Change {
    int slot_a = -1;  // exchange: slots a and b swap experts; replica: slot a becomes `to`
    int slot_b = -1;
    int to = -1;
    int cost = 0;                               // change in the number of changed slots
    std::vector<std::pair<int, double>> loads;  // (rank, load after) of the ranks it changes
  };

  double weight(int expert) const { return load_[expert] / count_[expert]; }
  int rank_of(int slot) const { return slot / shape_.slots_per_rank; }
  bool same_node(int rank_a, int rank_b) const {
    return shape_.node_of_rank(rank_a) == shape_.node_of_rank(rank_b);
  }
  int changed_if(int slot, int expert) const {
    return (expert != original_[slot]) - (row_[slot] != original_[slot]);
  }

  void sort_ranks() {
    by_load_.resize(shape_.num_ranks);
    std::iota(by_load_.begin(), by_load_.end(), 0);
    std::stable_sort(by_load_.begin(), by_load_.end(),
                     [&](int a, int b) { return rank_load_[a] > rank_load_[b]; });
    sum_sq_ = 0.0;
    for (double l : rank_load_) sum_sq_ += l * l;
  }

  // loads_ is the candidate's (rank, load after) list, one entry per rank; position_[rank] is
  // the rank's entry (-1: none), so that building and scoring a candidate costs its ranks only.
  void begin_loads() {
    for (const auto& entry : loads_) position_[entry.first] = -1;
    loads_.clear();
  }
  void add_load(int rank, double delta) {
    if (position_[rank] >= 0) {
      loads_[position_[rank]].second += delta;
      return;
    }
    position_[rank] = static_cast<int>(loads_.size());
    loads_.emplace_back(rank, rank_load_[rank] + delta);
  }

  // (max rank load, sum of squares) after the candidate in loads_.
  std::pair<double, double> score(const std::vector<std::pair<int, double>>& loads) const {
    double peak = 0.0, sum_sq = sum_sq_;
    for (int rank : by_load_) {
      if (position_[rank] < 0) {
        peak = rank_load_[rank];
        break;
      }
    }
    for (const auto& [rank, value] : loads) {
      peak = std::max(peak, value);
      sum_sq += value * value - rank_load_[rank] * rank_load_[rank];
    }
    return {peak, sum_sq};
  }

  void replica_loads(int slot, int to) {
    const int from = row_[slot];
    const double from_delta = load_[from] / (count_[from] - 1) - load_[from] / count_[from];
    const double to_delta = load_[to] / (count_[to] + 1) - load_[to] / count_[to];
    begin_loads();
    for (int other : slots_of_[from]) {
      if (other != slot) add_load(rank_of(other), from_delta);
    }
    for (int other : slots_of_[to]) add_load(rank_of(other), to_delta);
    add_load(rank_of(slot), load_[to] / (count_[to] + 1) - load_[from] / count_[from]);
  }

  // Picks the change with the most peak reduction per changed slot (a change that undoes an
  // earlier one costs nothing and counts as half a slot); among changes that leave the peak
  // (several ranks tie at it), the most sum-of-squares reduction per slot.
  bool apply_best(int max_changed) {
    const int heavy = by_load_[0];
    const double peak = rank_load_[heavy];
    double best_value = 0.0;
    bool best_lowers_peak = false;
    Change best;
    // `change` holds the candidate; its loads are in loads_ (reused, so no allocation per
    // candidate).
    auto consider = [&](Change& change) {
      if (num_changed_ + change.cost > max_changed) return;
      if (per_slot_) {
        // The excess over the target summed over ranks: what a change must lower. A replica
        // more for a hot expert lowers every rank holding it at once, for one slot.
        double delta = 0.0;
        for (const auto& [rank, value] : loads_) {
          delta +=
              std::max(0.0, value - target_peak_) - std::max(0.0, rank_load_[rank] - target_peak_);
        }
        if (delta >= -eps_) return;
        const double value = -delta / std::max(0.5, static_cast<double>(change.cost));
        if (value > best_value) {
          best_value = value;
          best = change;
          best.loads = loads_;
        }
        return;
      }
      const auto [new_peak, new_sum_sq] = score(loads_);
      const double per_slot = 1.0;
      bool take = false;
      if (new_peak < peak - eps_) {
        const double value = (peak - new_peak) / per_slot;
        take = !best_lowers_peak || value > best_value;
        if (take) {
          best_lowers_peak = true;
          best_value = value;
        }
      } else if (!best_lowers_peak && new_peak <= peak + eps_ &&
                 new_sum_sq < sum_sq_ - eps_ * peak) {
        const double value = (sum_sq_ - new_sum_sq) / per_slot;
        take = value > best_value;
        if (take) best_value = value;
      }
      if (take) {
        best = change;
        best.loads = loads_;
      }
    };
    const int num_slots = static_cast<int>(row_.size());
    const int first = heavy * shape_.slots_per_rank;
    const int last = first + shape_.slots_per_rank;
    // (a) exchanges between the heaviest rank and another.
    for (int a = first; a < last; ++a) {
      for (int b = 0; b < num_slots; ++b) {
        const int light = rank_of(b);
        if (light == heavy || !same_node(heavy, light) || row_[a] == row_[b]) continue;
        const double delta = weight(row_[a]) - weight(row_[b]);
        if (delta <= eps_ || delta >= peak - rank_load_[light] - eps_) continue;
        Change change;
        change.slot_a = a;
        change.slot_b = b;
        change.cost = changed_if(a, row_[b]) + changed_if(b, row_[a]);
        begin_loads();
        add_load(heavy, -delta);
        add_load(light, delta);
        consider(change);
      }
    }
    // (b) a slot turns into a replica of another expert; one side touches the heaviest rank.
    std::vector<bool> on_heavy(shape_.num_experts, false);
    for (int slot = first; slot < last; ++slot) on_heavy[row_[slot]] = true;
    for (int slot = 0; slot < num_slots; ++slot) {
      if (count_[row_[slot]] < 2) continue;
      const int node = shape_.node_of_rank(rank_of(slot));
      for (int to = 0; to < shape_.num_experts; ++to) {
        if (to == row_[slot] || node_of_expert_[to] != node) continue;
        if (rank_of(slot) != heavy && !on_heavy[to]) continue;
        Change change;
        change.slot_a = slot;
        change.to = to;
        change.cost = changed_if(slot, to);
        replica_loads(slot, to);
        consider(change);
      }
    }
    if (best.slot_a < 0) return false;
    apply(best);
    return true;
  }

  void apply(const Change& best) {
    num_changed_ += best.cost;
    for (const auto& [rank, value] : best.loads) rank_load_[rank] = value;
    if (best.to < 0) {
      const int expert_a = row_[best.slot_a], expert_b = row_[best.slot_b];
      std::replace(slots_of_[expert_a].begin(), slots_of_[expert_a].end(), best.slot_a,
                   best.slot_b);
      std::replace(slots_of_[expert_b].begin(), slots_of_[expert_b].end(), best.slot_b,
                   best.slot_a);
      std::swap(row_[best.slot_a], row_[best.slot_b]);
    } else {
      const int from = row_[best.slot_a];
      auto& from_slots = slots_of_[from];
      from_slots.erase(std::find(from_slots.begin(), from_slots.end(), best.slot_a));
      slots_of_[best.to].push_back(best.slot_a);
      --count_[from];
      ++count_[best.to];
      row_[best.slot_a] = best.to;
    }
  }

  const std::vector<double>& load_;
  const LayerShape& shape_;
  const std::vector<int> original_;
  std::vector<int> row_;                    // [slot] expert, the plan so far
  std::vector<int> node_of_expert_;         // [expert] node
  std::vector<int> count_;                  // [expert] replicas
  std::vector<std::vector<int>> slots_of_;  // [expert] its slots
  std::vector<double> rank_load_;
  std::vector<int> by_load_;  // ranks, heaviest first
  double sum_sq_ = 0.0;
  int num_changed_ = 0;
  double eps_ = 0.0;
  // true: each step takes the change that lowers the ranks' summed excess over target_peak_ the
  // most per changed slot; false: the one that lowers (max rank load, sum of squares) the most.
  bool per_slot_ = true;
  double target_peak_ = 0.0;
  std::vector<std::pair<int, double>> loads_;  // the candidate's (rank, load after)
  std::vector<int> position_;                  // [rank] its entry in loads_, or -1
};

// Experts per rank of a row, as counts per expert (a multiset).
std::vector<std::vector<int>> experts_of_ranks(const std::vector<int>& row, const LayerShape& shape,
                                               int first_rank, int num_ranks) {
  std::vector<std::vector<int>> counts(num_ranks, std::vector<int>(shape.num_experts, 0));
  for (int r = 0; r < num_ranks; ++r) {
    const int first = (first_rank + r) * shape.slots_per_rank;
    for (int slot = first; slot < first + shape.slots_per_rank; ++slot) ++counts[r][row[slot]];
  }
  return counts;
}

// Multiset intersection sizes: overlap[i][j] = sum over experts of min(a[i][e], b[j][e]).
std::vector<std::vector<int64_t>> overlaps(const std::vector<std::vector<int>>& a,
                                           const std::vector<std::vector<int>>& b) {
  std::vector<std::vector<int64_t>> out(a.size(), std::vector<int64_t>(b.size(), 0));
  for (size_t i = 0; i < a.size(); ++i) {
    for (size_t j = 0; j < b.size(); ++j) {
      for (size_t e = 0; e < a[i].size(); ++e) out[i][j] += std::min(a[i][e], b[j][e]);
    }
  }
  return out;
}

// The new row's ranks renumbered to the current ones that share the most experts with them
// (nodes first under the hierarchical policy, then ranks within each matched pair of nodes);
// within a rank, an expert that stays keeps its slot and the new ones fill the freed slots in
// increasing id. Renumbering ranks or nodes does not change balancedness.
std::vector<int> match_to_current(const std::vector<int>& fresh, const std::vector<int>& current,
                                  const LayerShape& shape) {
  const int ranks_per_node = shape.ranks_per_node;
  // node_target[new node] = current node.
  std::vector<int> node_target(shape.num_nodes, 0);
  if (shape.num_nodes > 1) {
    std::vector<std::vector<int>> fresh_nodes, current_nodes;
    for (int node = 0; node < shape.num_nodes; ++node) {
      std::vector<int> fresh_count(shape.num_experts, 0), current_count(shape.num_experts, 0);
      const int first = node * ranks_per_node * shape.slots_per_rank;
      for (int slot = first; slot < first + ranks_per_node * shape.slots_per_rank; ++slot) {
        ++fresh_count[fresh[slot]];
        ++current_count[current[slot]];
      }
      fresh_nodes.push_back(std::move(fresh_count));
      current_nodes.push_back(std::move(current_count));
    }
    node_target = max_weight_assignment(overlaps(fresh_nodes, current_nodes));
  }
  std::vector<int> out(current.size(), -1);
  for (int node = 0; node < shape.num_nodes; ++node) {
    const int target_node = node_target[node];
    const auto fresh_ranks = experts_of_ranks(fresh, shape, node * ranks_per_node, ranks_per_node);
    const auto current_ranks =
        experts_of_ranks(current, shape, target_node * ranks_per_node, ranks_per_node);
    const std::vector<int> rank_target =
        max_weight_assignment(overlaps(fresh_ranks, current_ranks));
    for (int r = 0; r < ranks_per_node; ++r) {
      std::vector<int> wanted = fresh_ranks[r];  // counts still to place
      const int first = (target_node * ranks_per_node + rank_target[r]) * shape.slots_per_rank;
      const int last = first + shape.slots_per_rank;
      for (int slot = first; slot < last; ++slot) {
        if (wanted[current[slot]] > 0) {
          out[slot] = current[slot];
          --wanted[current[slot]];
        }
      }
      int expert = 0;
      for (int slot = first; slot < last; ++slot) {
        if (out[slot] >= 0) continue;
        while (wanted[expert] == 0) ++expert;
        out[slot] = expert;
        --wanted[expert];
      }
    }
  }
  return out;
}

struct LayerPlan {
  std::vector<int> row;
  double current = 1.0, predicted = 1.0, scratch = 1.0;
  bool kept = false;
  bool from_scratch = false;
};

LayerPlan plan_layer_from(const std::vector<double>& layer_load, const std::vector<int>& current,
                          const LayerShape& shape, const MigrationOptions& options) {
  LayerPlan plan;
  const std::vector<int> fresh = eplb_internal::plan_layer_from_scratch(layer_load, shape);
  plan.current = layer_balancedness(layer_load, current, shape);
  plan.scratch = layer_balancedness(layer_load, fresh, shape);
  const double target = plan.scratch - options.balance_slack;
  // A placement that spreads an expert group over nodes breaks the hierarchical policy (tokens
  // of a group cross hosts) however balanced it is: it is never kept, and cannot be searched.
  std::vector<int> node_of_expert = node_of_experts(current, shape);
  const bool searchable = !node_of_expert.empty();
  if (searchable && plan.current >= target - 1e-12) {
    plan.row = current;
    plan.predicted = plan.current;
    plan.kept = true;
    return plan;
  }
  const int num_slots = static_cast<int>(current.size());
  const int max_changed =
      static_cast<int>(std::floor(options.max_moved_fraction * num_slots + 1e-9));
  // The peak at which the layer reaches the target: balancedness = mean / peak.
  const double mean = std::accumulate(layer_load.begin(), layer_load.end(), 0.0) / shape.num_ranks;
  const double target_peak = target > 0 ? mean / target : mean;

  std::vector<int> searched = current;
  // Unsearchable (groups straddle nodes): the current placement is no candidate at all.
  double searched_balancedness = searchable ? plan.current : -1.0;
  if (searchable) {
    // Most balance per changed slot first; when that stalls short of the target, most balance
    // per change (another local optimum, often past the first one's).
    // Last, the replica counts of the plan from scratch first, then the search.
    std::vector<int> fresh_counts(shape.num_experts, 0);
    for (int logical : fresh) ++fresh_counts[logical];
    for (int attempt = 0; attempt < 3; ++attempt) {
      SlotSearch search(layer_load, current, shape, node_of_expert, attempt != 1);
      if (attempt == 2) search.adopt_counts(fresh_counts);
      std::vector<int> row = search.run(target_peak, max_changed);
      if (num_changed(current, row) > max_changed) continue;  // adopting the counts took more
      const double value = layer_balancedness(layer_load, row, shape);
      const bool reached = value >= target - 1e-12;
      const bool had_reached = searched_balancedness >= target - 1e-12;
      if (searched == current || (reached && !had_reached) ||
          (reached && num_changed(current, row) < num_changed(current, searched)) ||
          (!reached && !had_reached && value > searched_balancedness)) {
        searched = std::move(row);
        searched_balancedness = value;
      }
      if (searched_balancedness >= target - 1e-12) break;
    }
  }
  std::vector<int> matched = match_to_current(fresh, current, shape);
  const bool searched_enough = searched_balancedness >= target - 1e-12 &&
                               num_changed(current, searched) <= num_changed(current, matched);
  // Giving slots back costs a search of its own; only when the matched plan may be taken.
  if (std::vector<int> node_of_matched = node_of_experts(matched, shape);
      !searched_enough && !node_of_matched.empty()) {
    // Slots the plan from scratch changes although the target does not need it go back.
    const std::vector<double> matched_loads = rank_loads(layer_load, matched, shape);
    const double matched_peak = *std::max_element(matched_loads.begin(), matched_loads.end());
    SlotSearch back(layer_load, current, shape, std::move(node_of_matched), true, &matched);
    matched = back.give_back(std::max(target_peak, matched_peak));
  }
  const int matched_changes = num_changed(current, matched);
  // The search's plan when it reached the target with no more changes than the matched plan from
  // scratch; else the matched plan, unless it changes more slots than the cap allows (then the
  // search's best within the cap). A layer whose current placement breaks the hierarchical
  // policy's groups cannot be searched and takes the matched plan, cap or not.
  bool take_matched = !(searched_balancedness >= target - 1e-12 &&
                        num_changed(current, searched) <= matched_changes);
  if (take_matched && matched_changes > max_changed && searchable) take_matched = false;
  if (take_matched) {
    plan.row = matched;
    plan.predicted = layer_balancedness(layer_load, matched, shape);
    plan.from_scratch = true;
  } else {
    plan.row = std::move(searched);
    plan.predicted = searched_balancedness;
  }
  return plan;
}

double mean_of(const std::vector<double>& values) {
  return values.empty() ? 1.0 : std::accumulate(values.begin(), values.end(), 0.0) / values.size();
}

}  // namespace

int64_t num_changed_slots(const Placement& from, const Placement& to) {
  EEP_CHECK(from.num_layers == to.num_layers && from.num_slots() == to.num_slots());
  int64_t changed = 0;
  for (int layer = 0; layer < from.num_layers; ++layer)
    changed += num_changed(from.phy2log[layer], to.phy2log[layer]);
  return changed;
}

Result<MigrationPlan> rebalance_experts_from(const LoadMatrix& load, const EplbConfig& config,
                                             const Placement& current,
                                             const MigrationOptions& options) {
  EEP_ASSIGN_OR_RETURN(const LayerShape shape, eplb_internal::check_input(load, config));
  EEP_RETURN_IF_ERROR(current.validate());
  const int num_layers = static_cast<int>(load.size());
  if (current.num_layers != num_layers || current.num_logical_experts != shape.num_experts ||
      current.num_ranks != config.num_ranks || current.slots_per_rank != config.slots_per_rank) {
    return error(ErrorCode::kInvalidArgument,
                 "the current placement is " + std::to_string(current.num_layers) + " layers x " +
                     std::to_string(current.num_logical_experts) + " experts on " +
                     std::to_string(current.num_ranks) + " ranks x " +
                     std::to_string(current.slots_per_rank) +
                     " slots; the load and config ask "
                     "for " +
                     std::to_string(num_layers) + " x " + std::to_string(shape.num_experts) +
                     " on " + std::to_string(config.num_ranks) + " x " +
                     std::to_string(config.slots_per_rank));
  }
  if (!(options.balance_slack >= 0 && options.balance_slack <= 1) ||
      !(options.max_moved_fraction >= 0 && options.max_moved_fraction <= 1)) {
    return error(ErrorCode::kInvalidArgument,
                 "EPLB balance slack and max moved fraction must be within [0, 1]");
  }
  std::vector<LayerPlan> layers(num_layers);
  eplb_internal::for_each_layer(num_layers, config.num_threads, [&](int layer) {
    layers[layer] = plan_layer_from(load[layer], current.phy2log[layer], shape, options);
  });
  MigrationPlan plan;
  plan.placement = current;
  for (int layer = 0; layer < num_layers; ++layer) {
    LayerPlan& layer_plan = layers[layer];
    const int changed = num_changed(current.phy2log[layer], layer_plan.row);
    plan.placement.phy2log[layer] = std::move(layer_plan.row);
    plan.slots_changed_per_layer.push_back(changed);
    plan.slots_changed += changed;
    plan.current_per_layer.push_back(layer_plan.current);
    plan.predicted_per_layer.push_back(layer_plan.predicted);
    plan.scratch_per_layer.push_back(layer_plan.scratch);
    plan.num_layers_kept += layer_plan.kept;
    plan.num_layers_from_scratch += layer_plan.from_scratch;
  }
  plan.current_balancedness = mean_of(plan.current_per_layer);
  plan.predicted_balancedness = mean_of(plan.predicted_per_layer);
  plan.scratch_balancedness = mean_of(plan.scratch_per_layer);
  EEP_CHECK(plan.placement.validate().is_ok());
  return plan;
}

Result<MigrationPlan> rebalance_experts_from(const ExpertTokenCounts& load,
                                             const EplbConfig& config, const Placement& current,
                                             const MigrationOptions& options) {
  LoadMatrix as_double(load.size());
  for (size_t layer = 0; layer < load.size(); ++layer)
    as_double[layer].assign(load[layer].begin(), load[layer].end());
  return rebalance_experts_from(as_double, config, current, options);
}

}  // namespace eep::coordinator
