#include "eep/coordinator/eplb.h"

#include "eplb_internal.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>
#include <string>
#include <thread>

namespace eep::coordinator {
namespace {

// Bounds the local search; each accepted move strictly lowers (max rank load, sum of squares), so
// it ends on its own long before this on real inputs.
constexpr int kMaxMovesPerItem = 64;

// Improves a packing in place by pairwise swaps: repeatedly the best swap between a pack, heaviest
// first, and a lighter one that lowers the heavier of the two; stops when none does. Sizes of the
// packs never change. pack_load[pack] must be the sum of its weights and stays so.
//
// `stuck` (optional, one entry per pack) carries over from an earlier call what is known about
// packs without an improving swap; `changed` lists the packs whose items or weights changed since
// (they and the packs that may now swap with them are checked again).
void refine_by_swaps(const std::vector<double>& weights, std::vector<int>& pack_of,
                     std::vector<double>& pack_load, std::vector<char>* stuck_in = nullptr,
                     const std::vector<int>& changed = {}) {
  const int num_items = static_cast<int>(weights.size());
  const int num_packs = static_cast<int>(pack_load.size());
  const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
  const double eps = 1e-12 * std::max(1.0, total);
  std::vector<std::vector<int>> items_of(num_packs);  // [pack] its items, kept in step
  for (int item = 0; item < num_items; ++item) items_of[pack_of[item]].push_back(item);
  // Whether exchanging item a of pack `heavy` with item b of pack `light` lowers the heavier of
  // the two (every such swap does, and only those are taken).
  auto improves = [&](int a, int heavy, int b, int light) {
    const double delta = weights[a] - weights[b];
    return light != heavy && delta > eps && delta < pack_load[heavy] - pack_load[light] - eps;
  };
  // stuck[pack]: known to have no improving swap with any pack. A swap changes only its two
  // packs, so a stuck pack can only gain one with those: checked against them alone, which keeps
  // the result that of scanning every pack every time, at a fraction of the cost.
  std::vector<char> own_stuck;
  if (!stuck_in) own_stuck.assign(num_packs, 0);
  std::vector<char>& stuck = stuck_in ? *stuck_in : own_stuck;
  EEP_CHECK(static_cast<int>(stuck.size()) == num_packs);
  auto unstick_partners_of = [&](const std::vector<int>& packs) {
    for (int pack : packs) stuck[pack] = 0;
    for (int pack = 0; pack < num_packs; ++pack) {
      if (!stuck[pack]) continue;
      for (int other : packs) {
        for (int a : items_of[pack]) {
          for (int b : items_of[other]) {
            if (improves(a, pack, b, other)) stuck[pack] = 0;
          }
        }
      }
    }
  };
  unstick_partners_of(changed);
  std::vector<int> by_load(num_packs);
  for (int move = 0; move < kMaxMovesPerItem * num_items; ++move) {
    std::iota(by_load.begin(), by_load.end(), 0);
    std::stable_sort(by_load.begin(), by_load.end(),
                     [&](int a, int b) { return pack_load[a] > pack_load[b]; });
    bool swapped = false;
    for (int heavy : by_load) {
      if (stuck[heavy]) continue;
      int best_a = -1, best_b = -1;
      double best_peak = pack_load[heavy] - eps;
      for (int a : items_of[heavy]) {
        for (int b = 0; b < num_items; ++b) {
          const int light = pack_of[b];
          if (!improves(a, heavy, b, light)) continue;
          const double delta = weights[a] - weights[b];
          const double peak = std::max(pack_load[heavy] - delta, pack_load[light] + delta);
          // Ties go to the lower item ids, whatever the order items_of lists them in.
          if (peak < best_peak || (best_a >= 0 && peak == best_peak &&
                                   std::make_pair(a, b) < std::make_pair(best_a, best_b))) {
            best_peak = peak;
            best_a = a;
            best_b = b;
          }
        }
      }
      if (best_a < 0) {
        stuck[heavy] = 1;
        continue;
      }
      const int light = pack_of[best_b];
      const double delta = weights[best_a] - weights[best_b];
      pack_load[heavy] -= delta;
      pack_load[light] += delta;
      std::replace(items_of[heavy].begin(), items_of[heavy].end(), best_a, best_b);
      std::replace(items_of[light].begin(), items_of[light].end(), best_b, best_a);
      std::swap(pack_of[best_a], pack_of[best_b]);
      unstick_partners_of({heavy, light});
      swapped = true;
      break;
    }
    if (!swapped) return;
  }
}

// Packs items with `weights` into num_packs packs of exactly items_per_pack items each
// (weights.size() == num_packs * items_per_pack), balancing the pack sums: heaviest item first
// into the lightest pack with room, then (when `refine`) refine_by_swaps. Returns the pack of
// each item.
std::vector<int> pack_balanced(const std::vector<double>& weights, int num_packs,
                               int items_per_pack, bool refine) {
  const int num_items = static_cast<int>(weights.size());
  EEP_CHECK(num_items == num_packs * items_per_pack);
  std::vector<int> order(num_items);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return weights[a] > weights[b]; });
  std::vector<int> pack_of(num_items, -1);
  std::vector<double> pack_load(num_packs, 0.0);
  std::vector<int> pack_size(num_packs, 0);
  for (int item : order) {
    int best = -1;
    for (int pack = 0; pack < num_packs; ++pack) {
      if (pack_size[pack] < items_per_pack && (best < 0 || pack_load[pack] < pack_load[best]))
        best = pack;
    }
    pack_of[item] = best;
    pack_load[best] += weights[item];
    ++pack_size[best];
  }
  if (refine) refine_by_swaps(weights, pack_of, pack_load);
  return pack_of;
}

// Replica counts summing to num_slots: one each, then every extra slot to the expert with the
// highest load per replica (lowest index on ties).
std::vector<int> replicate_greedy(const std::vector<double>& load, int num_slots) {
  const int num_experts = static_cast<int>(load.size());
  std::vector<int> count(num_experts, 1);
  for (int slot = num_experts; slot < num_slots; ++slot) {
    int best = 0;
    for (int e = 1; e < num_experts; ++e) {
      if (load[e] / count[e] > load[best] / count[best]) best = e;
    }
    ++count[best];
  }
  return count;
}

// One layer's replicas of `load` (local expert ids) over num_ranks ranks of slots_per_rank slots.
// Greedy replication and balanced packing, then a local search that also moves replicas between
// experts: replication by load per replica ignores that every rank has exactly slots_per_rank
// slots, and a few hot experts with fewer, heavier replicas often pack better.
class LayerPlanner {
 public:
  LayerPlanner(const std::vector<double>& load, int num_ranks, int slots_per_rank)
      : load_(load), num_ranks_(num_ranks), slots_per_rank_(slots_per_rank) {
    const double total = std::accumulate(load.begin(), load.end(), 0.0);
    eps_ = 1e-12 * std::max(1.0, total);
  }

  // rank_experts[rank]: the local experts of its slots, in increasing id.
  std::vector<std::vector<int>> plan() {
    count_ = replicate_greedy(load_, num_ranks_ * slots_per_rank_);
    for (int e = 0; e < static_cast<int>(load_.size()); ++e) {
      for (int r = 0; r < count_[e]; ++r) item_expert_.push_back(e);
    }
    expert_items_.assign(load_.size(), {});
    for (size_t item = 0; item < item_expert_.size(); ++item)
      expert_items_[item_expert_[item]].push_back(static_cast<int>(item));
    item_rank_ = pack_balanced(weights(), num_ranks_, slots_per_rank_, /*refine=*/true);
    stuck_.assign(num_ranks_, 0);
    rank_load_.assign(num_ranks_, 0.0);
    for (size_t item = 0; item < item_expert_.size(); ++item)
      rank_load_[item_rank_[item]] += weight(item);
    // Each round strictly lowers (max rank load, sum of squares of rank loads).
    for (int move = 0; move < kMaxMovesPerItem * static_cast<int>(item_expert_.size()); ++move) {
      if (!move_replica()) break;
      refine_by_swaps(weights(), item_rank_, rank_load_, &stuck_, moved_ranks_);
    }
    std::vector<std::vector<int>> rank_experts(num_ranks_);
    for (size_t item = 0; item < item_expert_.size(); ++item)
      rank_experts[item_rank_[item]].push_back(item_expert_[item]);
    for (auto& experts : rank_experts) std::sort(experts.begin(), experts.end());
    return rank_experts;
  }

  // The heaviest rank's load after plan().
  double peak() const { return *std::max_element(rank_load_.begin(), rank_load_.end()); }

 private:
  double weight(int item) const { return load_[item_expert_[item]] / count_[item_expert_[item]]; }

  std::vector<double> weights() const {
    std::vector<double> out(item_expert_.size());
    for (size_t item = 0; item < out.size(); ++item) out[item] = weight(item);
    return out;
  }

  // The rank loads a move changes, as (rank, new load); a rank appears once.
  using RankChanges = std::vector<std::pair<int, double>>;

  static void add_change(RankChanges& changes, int rank, double base, double delta) {
    for (auto& change : changes) {
      if (change.first == rank) {
        change.second += delta;
        return;
      }
    }
    changes.emplace_back(rank, base + delta);
  }

  // Rank loads that change when item `item` (of an expert with >= 2 replicas) becomes a replica
  // of `to`: the ranks of the other replicas of both experts, and the item's own.
  RankChanges changes_after(int item, int to) const {
    const int from = item_expert_[item];
    const double from_before = load_[from] / count_[from];
    const double from_after = load_[from] / (count_[from] - 1);
    const double to_before = load_[to] / count_[to];
    const double to_after = load_[to] / (count_[to] + 1);
    RankChanges changes;
    for (int other : expert_items_[from]) {
      if (other == item) continue;
      const int rank = item_rank_[other];
      add_change(changes, rank, rank_load_[rank], from_after - from_before);
    }
    for (int other : expert_items_[to]) {
      const int rank = item_rank_[other];
      add_change(changes, rank, rank_load_[rank], to_after - to_before);
    }
    const int rank = item_rank_[item];
    add_change(changes, rank, rank_load_[rank], to_after - from_before);
    return changes;
  }

  // (max rank load, sum of squares) after `changes`, from the ranks sorted by load (heaviest
  // first) and the current sum of squares: the max is the heaviest unchanged rank or a changed one.
  std::pair<double, double> score_after(const RankChanges& changes, const std::vector<int>& by_load,
                                        double sum_sq) const {
    double peak = 0.0;
    for (int rank : by_load) {
      const bool changed = std::any_of(changes.begin(), changes.end(),
                                       [&](const auto& change) { return change.first == rank; });
      if (!changed) {
        peak = rank_load_[rank];
        break;
      }
    }
    for (const auto& [rank, value] : changes) {
      peak = std::max(peak, value);
      sum_sq += value * value - rank_load_[rank] * rank_load_[rank];
    }
    return {peak, sum_sq};
  }

  // Applies the best replica move that lowers (max rank load, sum of squares); false if none.
  // Only moves touching the heaviest rank can lower the max: a replica on it changes expert, or
  // an expert with a replica on it gains one. A move changes only the loads of the ranks that
  // hold replicas of its two experts, so each candidate costs their number, not the ranks'.
  bool move_replica() {
    const int num_items = static_cast<int>(item_expert_.size());
    const int num_experts = static_cast<int>(load_.size());
    std::vector<int> by_load(num_ranks_);
    std::iota(by_load.begin(), by_load.end(), 0);
    std::stable_sort(by_load.begin(), by_load.end(),
                     [&](int a, int b) { return rank_load_[a] > rank_load_[b]; });
    const int heavy = by_load[0];
    double sum_sq = 0.0;
    for (double l : rank_load_) sum_sq += l * l;
    std::vector<bool> on_heavy(num_experts, false);
    for (int item = 0; item < num_items; ++item) {
      if (item_rank_[item] == heavy) on_heavy[item_expert_[item]] = true;
    }
    std::pair<double, double> best = {rank_load_[heavy], sum_sq};
    int best_item = -1, best_to = -1;
    for (int item = 0; item < num_items; ++item) {
      if (count_[item_expert_[item]] < 2) continue;
      for (int to = 0; to < num_experts; ++to) {
        if (to == item_expert_[item]) continue;
        if (item_rank_[item] != heavy && !on_heavy[to]) continue;
        const auto candidate = score_after(changes_after(item, to), by_load, sum_sq);
        const bool better = candidate.first < best.first - eps_ ||
                            (candidate.first <= best.first + eps_ &&
                             candidate.second < best.second - eps_ * best.first);
        if (better) {
          best = candidate;
          best_item = item;
          best_to = to;
        }
      }
    }
    if (best_item < 0) return false;
    moved_ranks_.clear();
    for (const auto& [rank, value] : changes_after(best_item, best_to)) {
      rank_load_[rank] = value;
      moved_ranks_.push_back(rank);
    }
    const int from = item_expert_[best_item];
    auto& from_items = expert_items_[from];
    from_items.erase(std::find(from_items.begin(), from_items.end(), best_item));
    expert_items_[best_to].push_back(best_item);
    --count_[from];
    ++count_[best_to];
    item_expert_[best_item] = best_to;
    return true;
  }

  const std::vector<double>& load_;
  const int num_ranks_;
  const int slots_per_rank_;
  double eps_ = 0.0;
  std::vector<int> count_;                      // [expert] replicas
  std::vector<int> item_expert_;                // [replica] expert
  std::vector<int> item_rank_;                  // [replica] rank
  std::vector<std::vector<int>> expert_items_;  // [expert] its replicas
  std::vector<char> stuck_;                     // refine_by_swaps' knowledge, carried over
  std::vector<int> moved_ranks_;                // ranks the last replica move changed
  std::vector<double> rank_load_;
};

// One node's share of a layer: the experts of `groups` planned onto its ranks.
struct NodePlan {
  std::vector<int> phy2log;  // the node's slots, in rank order
  double peak = 0.0;         // its heaviest rank's load
};

NodePlan plan_node(const std::vector<double>& layer_load, const std::vector<int>& groups,
                   int group_size, int num_ranks, int slots_per_rank) {
  std::vector<int> groups_sorted = groups;
  std::sort(groups_sorted.begin(), groups_sorted.end());
  std::vector<int> node_experts;  // local id -> logical id, increasing
  for (int group : groups_sorted) {
    for (int e = group * group_size; e < (group + 1) * group_size; ++e) node_experts.push_back(e);
  }
  std::vector<double> node_load;
  for (int e : node_experts) node_load.push_back(layer_load[e]);
  LayerPlanner planner(node_load, num_ranks, slots_per_rank);
  NodePlan plan;
  for (const auto& rank_experts : planner.plan()) {
    for (int local : rank_experts) plan.phy2log.push_back(node_experts[local]);
  }
  plan.peak = planner.peak();
  return plan;
}

// One layer under the hierarchical policy: groups packed onto nodes as eplb.py does (heaviest
// group first onto the lightest node), then swaps of groups between the node with the heaviest
// rank and another node while that lowers the heavier node's heaviest rank. Balanced group sums
// do not imply balanced ranks (replicas and slot counts differ by node), hence the true
// objective. With one node this is the global policy.
std::vector<int> plan_layer(const std::vector<double>& layer_load, int num_nodes, int num_groups,
                            int ranks_per_node, int slots_per_rank) {
  const int num_experts = static_cast<int>(layer_load.size());
  const int group_size = num_experts / num_groups;
  const int groups_per_node = num_groups / num_nodes;
  std::vector<double> group_load(num_groups, 0.0);
  for (int e = 0; e < num_experts; ++e) group_load[e / group_size] += layer_load[e];
  const std::vector<int> node_of_group =
      pack_balanced(group_load, num_nodes, groups_per_node, /*refine=*/false);
  std::vector<std::vector<int>> node_groups(num_nodes);
  for (int group = 0; group < num_groups; ++group)
    node_groups[node_of_group[group]].push_back(group);
  std::vector<NodePlan> plans;
  for (int node = 0; node < num_nodes; ++node)
    plans.push_back(
        plan_node(layer_load, node_groups[node], group_size, ranks_per_node, slots_per_rank));

  const double total = std::accumulate(layer_load.begin(), layer_load.end(), 0.0);
  const double eps = 1e-12 * std::max(1.0, total);
  for (int round = 0; num_nodes > 1 && round < kMaxMovesPerItem * num_groups; ++round) {
    int heavy = 0;
    for (int node = 1; node < num_nodes; ++node) {
      if (plans[node].peak > plans[heavy].peak) heavy = node;
    }
    double best_peak = plans[heavy].peak - eps;
    int best_other = -1, best_i = -1, best_j = -1;
    NodePlan best_heavy_plan, best_other_plan;
    for (int other = 0; other < num_nodes; ++other) {
      if (other == heavy) continue;
      for (int i = 0; i < groups_per_node; ++i) {
        for (int j = 0; j < groups_per_node; ++j) {
          std::vector<int> heavy_groups = node_groups[heavy], other_groups = node_groups[other];
          std::swap(heavy_groups[i], other_groups[j]);
          NodePlan heavy_plan =
              plan_node(layer_load, heavy_groups, group_size, ranks_per_node, slots_per_rank);
          if (heavy_plan.peak >= best_peak) continue;
          NodePlan other_plan =
              plan_node(layer_load, other_groups, group_size, ranks_per_node, slots_per_rank);
          const double peak = std::max(heavy_plan.peak, other_plan.peak);
          if (peak < best_peak) {
            best_peak = peak;
            best_other = other;
            best_i = i;
            best_j = j;
            best_heavy_plan = std::move(heavy_plan);
            best_other_plan = std::move(other_plan);
          }
        }
      }
    }
    if (best_other < 0) break;
    std::swap(node_groups[heavy][best_i], node_groups[best_other][best_j]);
    plans[heavy] = std::move(best_heavy_plan);
    plans[best_other] = std::move(best_other_plan);
  }
  std::vector<int> phy2log;
  for (const NodePlan& plan : plans)
    phy2log.insert(phy2log.end(), plan.phy2log.begin(), plan.phy2log.end());
  return phy2log;
}

std::string str(long long v) {
  return std::to_string(v);
}

Status validate_load(const LoadMatrix& load) {
  if (load.empty() || load[0].empty()) {
    return error(ErrorCode::kInvalidArgument,
                 "expert load needs >= 1 layer and >= 1 expert (load[layer][expert])");
  }
  for (size_t layer = 0; layer < load.size(); ++layer) {
    if (load[layer].size() != load[0].size()) {
      return error(ErrorCode::kInvalidArgument, "expert load layer " + str(layer) + " has " +
                                                    str(load[layer].size()) +
                                                    " experts, layer 0 has " + str(load[0].size()));
    }
    for (size_t e = 0; e < load[layer].size(); ++e) {
      if (!std::isfinite(load[layer][e]) || load[layer][e] < 0) {
        return error(ErrorCode::kInvalidArgument,
                     "expert load of layer " + str(layer) + " expert " + str(e) + " is " +
                         std::to_string(load[layer][e]) + "; loads must be finite and >= 0");
      }
    }
  }
  return Status::ok();
}

LoadMatrix to_double(const ExpertTokenCounts& load) {
  LoadMatrix out(load.size());
  for (size_t layer = 0; layer < load.size(); ++layer)
    out[layer].assign(load[layer].begin(), load[layer].end());
  return out;
}

}  // namespace

namespace eplb_internal {

Result<LayerShape> check_input(const LoadMatrix& load, const EplbConfig& config) {
  EEP_RETURN_IF_ERROR(validate_load(load));
  const int num_experts = static_cast<int>(load[0].size());
  if (config.num_ranks < 1 || config.slots_per_rank < 1) {
    return error(ErrorCode::kInvalidArgument, "EPLB needs >= 1 rank and slot per rank (got " +
                                                  str(config.num_ranks) + " ranks, " +
                                                  str(config.slots_per_rank) + " slots per rank)");
  }
  const int num_slots = config.num_ranks * config.slots_per_rank;
  if (num_slots < num_experts) {
    return error(ErrorCode::kInvalidArgument,
                 str(config.num_ranks) + " ranks x " + str(config.slots_per_rank) +
                     " slots cannot hold " + str(num_experts) + " experts; use at least " +
                     str(Placement::min_slots_per_rank(num_experts, config.num_ranks)) +
                     " slots per rank");
  }
  if (config.num_nodes < 1 || config.num_groups < 1) {
    return error(ErrorCode::kInvalidArgument, "EPLB needs >= 1 node and >= 1 expert group");
  }
  if (config.num_threads < 0) {
    return error(
        ErrorCode::kInvalidArgument,
        "EPLB planner threads must be >= 0 (0 = one per core), got " + str(config.num_threads));
  }
  int num_nodes = config.num_nodes;
  int num_groups = config.num_groups;
  if (num_groups % num_nodes != 0) num_nodes = num_groups = 1;  // global policy, as eplb.py
  if (num_experts % num_groups != 0 || config.num_ranks % num_nodes != 0) {
    return error(ErrorCode::kInvalidArgument,
                 "hierarchical EPLB needs the " + str(num_experts) + " experts to split into " +
                     str(num_groups) + " equal groups and the " + str(config.num_ranks) +
                     " ranks into " + str(num_nodes) +
                     " equal nodes; use num_nodes = num_groups = 1 for the global policy");
  }
  LayerShape shape;
  shape.num_experts = num_experts;
  shape.num_ranks = config.num_ranks;
  shape.slots_per_rank = config.slots_per_rank;
  shape.num_nodes = num_nodes;
  shape.num_groups = num_groups;
  shape.ranks_per_node = config.num_ranks / num_nodes;
  // Enough slots overall means enough on every node: both sides divide by num_nodes.
  EEP_CHECK(shape.ranks_per_node * config.slots_per_rank >=
            (num_groups / num_nodes) * (num_experts / num_groups));
  return shape;
}

std::vector<int> plan_layer_from_scratch(const std::vector<double>& layer_load,
                                         const LayerShape& shape) {
  return plan_layer(layer_load, shape.num_nodes, shape.num_groups, shape.ranks_per_node,
                    shape.slots_per_rank);
}

void for_each_layer(int num_layers, int num_threads, const std::function<void(int)>& plan) {
  if (num_threads == 0) num_threads = static_cast<int>(std::thread::hardware_concurrency());
  num_threads = std::clamp(num_threads, 1, num_layers);
  if (num_threads == 1) {
    for (int layer = 0; layer < num_layers; ++layer) plan(layer);
    return;
  }
  // Layers go to whichever thread is free next: their costs differ a lot (skewed layers search
  // longer). Each layer writes only its own outputs, so the result does not depend on the order.
  std::atomic<int> next_layer{0};
  auto work = [&] {
    for (int layer = next_layer++; layer < num_layers; layer = next_layer++) plan(layer);
  };
  std::vector<std::thread> threads;
  for (int t = 1; t < num_threads; ++t) threads.emplace_back(work);
  work();
  for (std::thread& thread : threads) thread.join();
}

}  // namespace eplb_internal

Result<Placement> rebalance_experts(const LoadMatrix& load, const EplbConfig& config) {
  EEP_ASSIGN_OR_RETURN(const eplb_internal::LayerShape shape,
                       eplb_internal::check_input(load, config));
  const int num_layers = static_cast<int>(load.size());
  Placement placement;
  placement.num_layers = num_layers;
  placement.num_logical_experts = shape.num_experts;
  placement.num_ranks = config.num_ranks;
  placement.slots_per_rank = config.slots_per_rank;
  placement.phy2log.assign(num_layers, std::vector<int>());
  eplb_internal::for_each_layer(num_layers, config.num_threads, [&](int layer) {
    placement.phy2log[layer] = eplb_internal::plan_layer_from_scratch(load[layer], shape);
  });
  EEP_CHECK(placement.validate().is_ok());
  return placement;
}

Result<Placement> rebalance_experts(const ExpertTokenCounts& load, const EplbConfig& config) {
  return rebalance_experts(to_double(load), config);
}

Result<Balancedness> balancedness(const LoadMatrix& load, const Placement& placement) {
  EEP_RETURN_IF_ERROR(validate_load(load));
  EEP_RETURN_IF_ERROR(placement.validate());
  if (static_cast<int>(load.size()) != placement.num_layers ||
      static_cast<int>(load[0].size()) != placement.num_logical_experts) {
    return error(ErrorCode::kInvalidArgument,
                 "expert load is " + str(load.size()) + " layers x " + str(load[0].size()) +
                     " experts but the placement has " + str(placement.num_layers) + " x " +
                     str(placement.num_logical_experts));
  }
  Balancedness result;
  for (int layer = 0; layer < placement.num_layers; ++layer) {
    std::vector<int> count(placement.num_logical_experts, 0);
    for (int logical : placement.phy2log[layer]) ++count[logical];
    std::vector<double> rank_load(placement.num_ranks, 0.0);
    for (int slot = 0; slot < placement.num_slots(); ++slot) {
      const int logical = placement.phy2log[layer][slot];
      rank_load[placement.rank_of_slot(slot)] += load[layer][logical] / count[logical];
    }
    const double peak = *std::max_element(rank_load.begin(), rank_load.end());
    const double mean =
        std::accumulate(rank_load.begin(), rank_load.end(), 0.0) / placement.num_ranks;
    result.per_layer.push_back(peak > 0 ? mean / peak : 1.0);
  }
  result.mean = std::accumulate(result.per_layer.begin(), result.per_layer.end(), 0.0) /
                std::max<size_t>(1, result.per_layer.size());
  return result;
}

Result<Balancedness> balancedness(const ExpertTokenCounts& load, const Placement& placement) {
  return balancedness(to_double(load), placement);
}

}  // namespace eep::coordinator
