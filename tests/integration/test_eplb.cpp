// EPLB end to end on the CPU backend: a tiny model whose router favours a few experts, 2 and 4
// ranks under eep-bench load with --enable-eplb. The coordinator measures the load, plans, the
// workers move experts between steps over Gloo; balancedness rises and every greedy output equals
// the one of the same fleet without EPLB. Every plan also computes the DeepSeek-V3-like shape of
// tests/data/eplb/large-cases.json (--eplb-test-load), off the event loop: the loop's longest
// iteration meanwhile stays short.
#include <regex>

#include "fleet.h"

using namespace eep;
using namespace eep::testing;

namespace {

struct BenchRun {
  json report;        // eep-bench --result-json
  std::string log;    // the coordinator's log
  json final_status;  // `eepctl status --json` after the run
};

BenchRun serve_and_bench(const std::string& model, int ranks, const std::vector<std::string>& eplb,
                         int num_prompts) {
  std::vector<std::string> flags = {"--dp", std::to_string(ranks), "--model", model,
                                    "--worker-arg=--kv-blocks=256"};
  flags.insert(flags.end(), eplb.begin(), eplb.end());
  Fleet fleet(flags);
  REQUIRE(eventually([&] { return fleet.has_active(static_cast<size_t>(ranks)); }, 60s));
  const std::string results = fleet.dir().file("bench.json");
  CommandResult bench =
      run_command({bin("eep-bench"), "--base-url", fleet.base_url(), "--num-prompts",
                   std::to_string(num_prompts), "--random-input-len", "24", "--random-output-len",
                   "32", "--max-concurrency", "32", "--stream", "--seed", "5", "--save-tokens",
                   "--no-progress", "--result-json", results},
                  300s);
  INFO(bench.output);
  INFO(fleet.coordinator_log());
  REQUIRE(bench.exit_code == 0);
  BenchRun run;
  run.report = json::parse(read_file(results));
  if (!eplb.empty()) {
    // The window restarts at each completed plan: load the new placement a little more (these
    // outputs are not compared) until a plan has completed and been measured on, the window has
    // data and no plan is in progress.
    const bool measured = eventually(
        [&] {
          const json status = fleet.status();
          // A plan being computed has no id yet (in_progress is null): wait for one to have
          // ended, which a skewed load always gets.
          // And the window on its placement has been full once: the log then has the
          // balancedness measured on it.
          if (status["eplb"]["last_rebalance"].is_object() &&
              fleet.coordinator_log().find("balancedness measured") != std::string::npos &&
              status["eplb"]["in_progress"].is_null() &&
              status["eplb"]["window_steps"].get<int>() > 0) {
            return true;
          }
          CommandResult more =
              run_command({bin("eep-bench"), "--base-url", fleet.base_url(), "--num-prompts", "16",
                           "--random-input-len", "24", "--random-output-len", "32",
                           "--max-concurrency", "16", "--seed", "6", "--no-progress"},
                          60s);
          CHECK(more.exit_code == 0);
          return false;
        },
        60s);
    CHECK(measured);
  }
  run.final_status = fleet.status();
  run.log = fleet.coordinator_log();
  return run;
}

// Output ids per request id.
std::map<int, json> outputs(const json& report) {
  std::map<int, json> by_id;
  for (const json& record : report["requests"])
    by_id[record["id"].get<int>()] = record["output_ids"];
  return by_id;
}

// The measured balancedness the first plan started from, from its log line
// "EPLB rebalance 1 (...): balancedness 0.8971 -> predicted 0.9998 over 72 steps; ...".
// The loop's longest iteration while each plan was computed, from the log lines
// "EPLB: plan ready in 812.3 ms off the event loop; the loop's longest iteration meanwhile 2.41
// ms".
std::vector<std::pair<double, double>> plan_ms_and_longest_iteration_ms(const std::string& log) {
  const std::regex line(
      R"(plan ready in ([0-9.]+) ms off the event loop; the loop's longest iteration meanwhile ([0-9.]+) ms)");
  std::vector<std::pair<double, double>> out;
  for (auto it = std::sregex_iterator(log.begin(), log.end(), line); it != std::sregex_iterator();
       ++it) {
    out.emplace_back(std::stod((*it)[1].str()), std::stod((*it)[2].str()));
  }
  return out;
}

double first_window_balancedness(const std::string& log) {
  std::smatch match;
  const std::regex line(R"(EPLB rebalance 1 \([^)]*\): balancedness ([0-9.]+) -> predicted)");
  REQUIRE(std::regex_search(log, match, line));
  return std::stod(match[1].str());
}

}  // namespace

TEST_CASE("EPLB under load: balancedness rises, greedy outputs equal a run without EPLB",
          "[eplb]") {
  const int ranks = GENERATE(2, 4);
  TempDir dir;
  const std::string model = make_tiny_model(dir, 7, {"--router-skew", "4"}, "skewed");
  const int num_prompts = 192;

  const BenchRun plain = serve_and_bench(model, ranks, {}, num_prompts);
  const BenchRun balanced = serve_and_bench(
      model, ranks,
      {"--enable-eplb", "--num-redundant-experts", std::to_string(2 * ranks), "--eplb-window-size",
       "40", "--eplb-step-interval", "60", "--eplb-layers-per-step", "1", "--eplb-test-load",
       std::string(EEP_TEST_DATA_DIR) + "/eplb/large-cases.json"},
      num_prompts);
  INFO(balanced.log);

  for (const BenchRun* run : {&plain, &balanced}) {
    CHECK(run->report["summary"]["completed"] == num_prompts);
    CHECK(run->report["summary"]["failed"] == 0);
  }

  // Balancedness: the first window's (what the first plan started from) against the window
  // measured on the placement the last plan moved to.
  const json& eplb = balanced.final_status["eplb"];
  INFO(eplb.dump(2));
  REQUIRE(eplb["last_rebalance"].is_object());
  CHECK(eplb["last_rebalance"]["ok"] == true);
  CHECK(eplb["last_rebalance"]["bytes_moved"].get<double>() > 0);
  REQUIRE(eplb["balancedness"].is_number());
  const double before = first_window_balancedness(balanced.log);
  const double after = eplb["balancedness"].get<double>();
  std::printf(
      "EPLB on %d CPU ranks: balancedness %.4f in the first window, %.4f after %d "
      "rebalance(s); %.0f bytes moved by the last, longest step gap %.1f ms\n",
      ranks, before, after, eplb["last_rebalance"]["plan_id"].get<int>(),
      eplb["last_rebalance"]["bytes_moved"].get<double>(),
      eplb["last_rebalance"]["longest_step_gap_ms"].get<double>());
  CHECK(before < 0.9);
  CHECK(after > before + 0.05);

  // Once the window on the new placement was full, the log has the measured balancedness beside
  // the prediction.
  std::smatch measured_line;
  REQUIRE(std::regex_search(balanced.log, measured_line,
                            std::regex(R"(EPLB rebalance [0-9]+: balancedness measured [^\n]*)")));
  std::printf("%s\n", measured_line.str().c_str());

  // Planning (256 experts / 64 x 5 slots / 61 layers beside the model's own) never held up the
  // loop that relays the tokens.
  const auto plans = plan_ms_and_longest_iteration_ms(balanced.log);
  REQUIRE_FALSE(plans.empty());
  for (const auto& [plan_ms, longest_ms] : plans) {
    std::printf("EPLB plan with the V3-like test load: %.0f ms, loop's longest iteration %.2f ms\n",
                plan_ms, longest_ms);
    CHECK(longest_ms < 20.0);
  }

  // Greedy outputs, request by request, are those of the fleet that never moved an expert.
  const std::map<int, json> expected = outputs(plain.report);
  const std::map<int, json> got = outputs(balanced.report);
  REQUIRE(got.size() == expected.size());
  int differing = 0;
  for (const auto& [id, ids] : expected) differing += got.at(id) != ids;
  CHECK(differing == 0);
}
