// eep-eplb: the EPLB planner offline, on load matrices in the format of
// ../shared/eplb-reference/cases.json (docs/eplb.md, "eep-eplb").
//   eep-eplb CASES.json [--case N] [--threads N] [--expert-bytes B] [--balance-slack S]
//            [--max-moved-fraction F] [--drift-steps N --drift F --seed S] [--current FILE]
//            [--repeat N]
// Per case: balancedness of our plan from scratch (and of eplb.py's recorded one when the file
// has it), ms per plan, then a plan from the current placement for a drifted load: slots changed,
// bytes to move, balancedness current / predicted / from scratch. Operators size
// --num-redundant-experts with it; tests and benchmarks run it on large shapes.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "eep/common/config.h"
#include "eep/coordinator/eplb.h"

namespace {

using namespace eep;
using namespace eep::coordinator;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string cases_path;
  int case_idx = -1;
  int threads = 0;
  double expert_bytes = 0;
  MigrationOptions migration;
  int drift_steps = 10;
  double drift = 0.1;
  uint64_t seed = 1;
  std::string current_path;
  int repeat = 3;
  bool per_layer = false;
};

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Every count times its own uniform factor in [1 - fraction, 1 + fraction].
LoadMatrix perturbed(const LoadMatrix& load, double fraction, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> factor(1.0 - fraction, 1.0 + fraction);
  LoadMatrix out = load;
  for (auto& layer : out) {
    for (double& value : layer) value *= factor(rng);
  }
  return out;
}

Placement with_rows(const Placement& shape, std::vector<std::vector<int>> phy2log) {
  Placement placement = shape;
  placement.phy2log = std::move(phy2log);
  return placement;
}

std::string bytes_text(double bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.2f GB", bytes / 1e9);
  return text;
}

// Times `plan` `repeat` times; returns the result of the last call and the median ms.
template <typename F>
auto timed(int repeat, F plan, double* median_ms) {
  std::vector<double> ms;
  auto result = plan();
  for (int i = 0; i < repeat; ++i) {
    const auto start = Clock::now();
    result = plan();
    ms.push_back(ms_since(start));
  }
  std::sort(ms.begin(), ms.end());
  *median_ms = ms[ms.size() / 2];
  return result;
}

int run_case(const nlohmann::json& c, int case_idx, const Options& options) {
  const LoadMatrix load = c.at("load").get<LoadMatrix>();
  EplbConfig config;
  config.num_ranks = c.at("num_ranks").get<int>();
  config.slots_per_rank = c.at("slots_per_rank").get<int>();
  config.num_nodes = c.value("num_nodes", 1);
  config.num_groups = c.value("num_groups", 1);
  config.num_threads = options.threads;
  const int num_experts = static_cast<int>(load.at(0).size());
  const int num_layers = static_cast<int>(load.size());
  std::printf("case %d: %d experts on %d ranks x %d slots, %d layers, %d nodes, %d groups (%s)\n",
              case_idx, num_experts, config.num_ranks, config.slots_per_rank, num_layers,
              config.num_nodes, config.num_groups, c.value("distribution", "?").c_str());

  double scratch_ms = 0;
  auto scratch = timed(
      options.repeat, [&] { return rebalance_experts(load, config); }, &scratch_ms);
  if (!scratch.is_ok()) {
    std::cerr << "eep-eplb: case " << case_idx << ": " << scratch.status().to_string() << "\n";
    return 1;
  }
  const double ours = balancedness(load, *scratch).value().mean;
  std::printf("  from scratch: balancedness %.4f", ours);
  if (c.contains("eplb_phy2log")) {
    const Placement theirs = with_rows(*scratch, c.at("eplb_phy2log"));
    std::printf(" (eplb.py %.4f)", balancedness(load, theirs).value().mean);
  }
  std::printf(", %.1f ms per plan on %d thread(s)\n", scratch_ms, options.threads);

  // The current placement the drifted loads are planned from.
  Placement current = *scratch;
  if (!options.current_path.empty()) {
    std::ifstream file(options.current_path);
    const auto json = nlohmann::json::parse(file);
    current = with_rows(*scratch, json.at("phy2log").get<std::vector<std::vector<int>>>());
    if (auto valid = current.validate(); !valid.is_ok()) {
      std::cerr << "eep-eplb: " << options.current_path << ": " << valid.to_string() << "\n";
      return 1;
    }
  }
  const int64_t num_slots = static_cast<int64_t>(num_layers) * current.num_slots();
  auto report = [&](const char* what, const MigrationPlan& plan, double ms) {
    std::printf(
        "  %s: %lld of %lld slots change (%.1f%%)%s, balancedness current %.4f -> predicted "
        "%.4f (from scratch %.4f), %d layers kept, %d from scratch, %.1f ms\n",
        what, static_cast<long long>(plan.slots_changed), static_cast<long long>(num_slots),
        100.0 * plan.slots_changed / num_slots,
        options.expert_bytes > 0
            ? (", " + bytes_text(plan.slots_changed * options.expert_bytes) + " to move").c_str()
            : "",
        plan.current_balancedness, plan.predicted_balancedness, plan.scratch_balancedness,
        plan.num_layers_kept, plan.num_layers_from_scratch, ms);
    if (!options.per_layer) return;
    for (size_t layer = 0; layer < plan.slots_changed_per_layer.size(); ++layer) {
      std::printf("    layer %zu: %d slots change, balancedness %.4f -> %.4f (from scratch %.4f)\n",
                  layer, plan.slots_changed_per_layer[layer], plan.current_per_layer[layer],
                  plan.predicted_per_layer[layer], plan.scratch_per_layer[layer]);
    }
  };

  if (!options.current_path.empty()) {
    double ms = 0;
    auto plan = timed(
        options.repeat,
        [&] { return rebalance_experts_from(load, config, current, options.migration); }, &ms);
    if (!plan.is_ok()) {
      std::cerr << "eep-eplb: " << plan.status().to_string() << "\n";
      return 1;
    }
    report("from --current", *plan, ms);
  }

  if (c.contains("drift_load")) {
    const LoadMatrix drift = c.at("drift_load").get<LoadMatrix>();
    double ms = 0;
    auto plan = timed(
        options.repeat,
        [&] { return rebalance_experts_from(drift, config, *scratch, options.migration); }, &ms);
    if (!plan.is_ok()) {
      std::cerr << "eep-eplb: " << plan.status().to_string() << "\n";
      return 1;
    }
    report("drift_load from our plan", *plan, ms);
    if (c.contains("eplb_drift_phy2log") && c.contains("eplb_phy2log")) {
      const Placement before = with_rows(*scratch, c.at("eplb_phy2log"));
      const Placement after = with_rows(*scratch, c.at("eplb_drift_phy2log"));
      const int64_t changed = num_changed_slots(before, after);
      std::printf("  eplb.py on drift_load: %lld slots change (%.1f%%), balancedness %.4f\n",
                  static_cast<long long>(changed), 100.0 * changed / num_slots,
                  balancedness(drift, after).value().mean);
    }
  }

  if (options.drift_steps > 0) {
    std::mt19937_64 rng(options.seed);
    std::vector<double> changed_pct, gap, ms_each;
    Placement placement = *scratch;
    for (int step = 0; step < options.drift_steps; ++step) {
      const LoadMatrix drifted = perturbed(load, options.drift, rng);
      const auto start = Clock::now();
      auto plan = rebalance_experts_from(drifted, config, placement, options.migration);
      ms_each.push_back(ms_since(start));
      if (!plan.is_ok()) {
        std::cerr << "eep-eplb: " << plan.status().to_string() << "\n";
        return 1;
      }
      changed_pct.push_back(100.0 * plan->slots_changed / num_slots);
      gap.push_back(plan->scratch_balancedness - plan->predicted_balancedness);
      placement = plan->placement;
    }
    auto median = [](std::vector<double> values) {
      std::sort(values.begin(), values.end());
      return values[values.size() / 2];
    };
    std::printf(
        "  %d drift steps of %.0f%%: slots changed per plan median %.1f%% (max %.1f%%), "
        "balancedness below from scratch by at most %.4f, median %.1f ms per plan\n",
        options.drift_steps, 100 * options.drift, median(changed_pct),
        *std::max_element(changed_pct.begin(), changed_pct.end()),
        *std::max_element(gap.begin(), gap.end()), median(ms_each));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  CLI::App app{"eep-eplb: plan expert placements offline on load matrices (cases.json format)"};
  app.add_option("cases", options.cases_path, "cases.json-format file")->required();
  app.add_option("--case", options.case_idx, "Only this case (index; default all)");
  app.add_option("--threads", options.threads, "Planner threads (0 = one per core)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  app.add_option("--expert-bytes", options.expert_bytes,
                 "Bytes of one expert's weights, to print the bytes a plan moves")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--balance-slack", options.migration.balance_slack,
                 "Balancedness per layer a plan may give up against one from scratch")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--max-moved-fraction", options.migration.max_moved_fraction,
                 "At most this fraction of a layer's slots change")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--drift-steps", options.drift_steps,
                 "Plans on the load perturbed by --drift, each from the last (0 = none)")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  app.add_option("--drift", options.drift, "Each count times a uniform factor in [1-F, 1+F]")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--seed", options.seed, "Seed of the drift")->capture_default_str();
  app.add_option("--current", options.current_path,
                 "JSON {\"phy2log\": [[...]]}: also plan the load from this placement");
  app.add_option("--repeat", options.repeat, "Timed runs per plan (the median is printed)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_flag("--per-layer", options.per_layer, "Print every layer of a plan from a placement");
  if (auto exit_code = eep::parse_args(app, argc, argv)) return *exit_code;

  std::ifstream file(options.cases_path);
  if (!file) {
    std::cerr << "eep-eplb: cannot read " << options.cases_path << "\n";
    return 1;
  }
  nlohmann::json cases;
  try {
    cases = nlohmann::json::parse(file).at("cases");
    int status = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
      if (options.case_idx >= 0 && static_cast<int>(i) != options.case_idx) continue;
      status |= run_case(cases[i], static_cast<int>(i), options);
    }
    return status;
  } catch (const nlohmann::json::exception& e) {
    std::cerr << "eep-eplb: " << options.cases_path << ": " << e.what() << "\n";
    return 1;
  }
}
