// eep-bench's scales without a server: the before / during / after windows and the longest
// token gap on synthetic token timelines, and the validation of --scale-at / --scale-to.
#include <CLI/CLI.hpp>
#include <catch2/catch.hpp>

#include "bench_records.h"
#include "eep/bench/runner.h"
#include "eep/bench/scaling.h"

using namespace eep::bench;
using namespace eep::bench::testing;

namespace {

std::vector<std::string> args(std::vector<std::string> list) {
  std::reverse(list.begin(), list.end());  // CLI11 consumes from the back
  return list;
}

}  // namespace

TEST_CASE("window metrics count tokens, gaps and ends by the window they fall in",
          "[bench_scaling]") {
  const std::vector<RequestRecord> records = {
      // Tokens at 0.5, 1.0, 1.5, then a 1.5 s stall across [2, 3), then 3.0, 3.1.
      streamed_at(0, 0.1, {0.5, 1.0, 1.5, 3.0, 3.1}, 3.2),
      // Steady 0.25 s gaps from 2.0 to 3.5, ends at 3.6.
      streamed_at(1, 1.9, {2.0, 2.25, 2.5, 2.75, 3.0, 3.25, 3.5}, 3.6),
      // Failed at 2.5 after two tokens.
      streamed_at(2, 1.0, {1.2, 1.4}, 2.5, /*success=*/false),
      // Eight tokens at once at 2.2.
      whole_reply(3, 1.0, 2.2, 8),
  };

  const WindowMetrics during = window_metrics(records, 2.0, 3.0);
  CHECK(during.begin_s == 2.0);
  CHECK(during.end_s == 3.0);
  CHECK(during.num_completed == 1);  // request 3 at 2.2
  CHECK(during.num_failed == 1);     // request 2 at 2.5
  // Request 1: 2.0, 2.25, 2.5, 2.75 (3.0 is the next window's); request 3: 8 at 2.2.
  CHECK(during.output_tokens == 12);
  CHECK(during.output_throughput == Approx(12.0));
  // Gaps whose second token arrived in [2, 3): request 1's three 0.25 s gaps.
  CHECK(during.itl.mean_ms == Approx(250));
  CHECK(during.itl.p99_ms == Approx(250));
  // Request 0's stall 1.5 -> 3.0 overlaps the window though neither token is in it.
  CHECK(during.longest_gap_ms == Approx(1500));
  CHECK(during.longest_gap_request_idx == 0);
  CHECK(during.longest_gap_start_s == Approx(1.5));

  const WindowMetrics after = window_metrics(records, 3.0, 4.0);
  CHECK(after.num_completed == 2);  // requests 0 and 1
  CHECK(after.num_failed == 0);
  CHECK(after.output_tokens == 5);  // request 0: 3.0, 3.1; request 1: 3.0, 3.25, 3.5
  // The stall ended at 3.0: its gap counts as an ITL of this window (second token here).
  CHECK(after.itl.mean_ms == Approx((1500 + 100 + 250 + 250 + 250) / 5.0));
  CHECK(after.longest_gap_ms == Approx(1500));

  // A gap belongs to a window when its second token does: 3.25 -> 3.5 is one of [3.5, 5).
  const WindowMetrics last = window_metrics(records, 3.5, 5.0);
  CHECK(last.output_tokens == 1);
  CHECK(last.longest_gap_ms == Approx(250));
  CHECK(last.longest_gap_request_idx == 1);
  const WindowMetrics quiet = window_metrics(records, 3.6, 5.0);
  CHECK(quiet.longest_gap_ms == 0);
  CHECK(quiet.longest_gap_request_idx == -1);
  CHECK(quiet.output_tokens == 0);
}

TEST_CASE("a token at a window's end belongs to the next window, and empty windows are zeros",
          "[bench_scaling]") {
  const std::vector<RequestRecord> records = {streamed_at(0, 0, {1.0, 2.0}, 2.0)};
  CHECK(window_metrics(records, 0, 1.0).output_tokens == 0);
  CHECK(window_metrics(records, 1.0, 2.0).output_tokens == 1);
  const WindowMetrics empty = window_metrics(records, 2.5, 2.5);
  CHECK(empty.output_throughput == 0);
  CHECK(empty.num_completed == 0);
  CHECK(empty.itl.mean_ms == 0);
}

TEST_CASE("scale windows: before from the previous outcome, after to the next accepted command",
          "[bench_scaling]") {
  const std::vector<RequestRecord> records = {
      streamed_at(0, 0, {0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5}, 6.6)};
  auto accepted = [](double at_s, int dp, double command_s, double outcome_s, int64_t generation) {
    ScaleRecord scale;
    scale.trigger = {at_s, dp};
    scale.command_s = command_s;
    scale.accepted_s = command_s + 0.01;
    scale.outcome_s = outcome_s;
    scale.outcome = ScaleOutcome::kSucceeded;
    scale.target_generation = generation;
    return scale;
  };
  ScaleRecord refused;
  refused.trigger = {2.5, 4};
  refused.command_s = 2.5;
  refused.outcome = ScaleOutcome::kRefused;
  refused.reason = "failed_precondition: a scale is running";
  std::vector<ScaleRecord> scales = {accepted(1, 3, 1.0, 2.0, 2), refused,
                                     accepted(4, 2, 4.0, 5.0, 3)};
  attach_windows(scales, records, 7.0);

  REQUIRE(scales[0].windows);
  CHECK_FALSE(scales[1].windows);  // refused: nothing to compare
  REQUIRE(scales[2].windows);
  const ScaleWindows& first = *scales[0].windows;
  CHECK(first.before.begin_s == 0);
  CHECK(first.before.end_s == 1.0);
  CHECK(first.during.begin_s == 1.0);
  CHECK(first.during.end_s == 2.0);
  CHECK(first.after.begin_s == 2.0);
  CHECK(first.after.end_s == 4.0);  // the refused command at 2.5 does not cut it
  CHECK(first.after.output_tokens == 2);
  const ScaleWindows& second = *scales[2].windows;
  CHECK(second.before.begin_s == 2.0);
  CHECK(second.before.end_s == 4.0);
  CHECK(second.during.end_s == 5.0);
  CHECK(second.after.begin_s == 5.0);
  CHECK(second.after.end_s == 7.0);
  CHECK(second.after.num_completed == 1);

  // An outcome never seen: "during" runs to the end of the run and "after" is empty.
  std::vector<ScaleRecord> unknown = {accepted(1, 3, 1.0, -1, 2)};
  unknown[0].outcome = ScaleOutcome::kUnknown;
  attach_windows(unknown, records, 7.0);
  REQUIRE(unknown[0].windows);
  CHECK(unknown[0].windows->during.end_s == 7.0);
  CHECK(unknown[0].windows->after.begin_s == 7.0);
  CHECK(unknown[0].windows->after.end_s == 7.0);

  const nlohmann::json json = to_json(scales);
  REQUIRE(json.size() == 3);
  CHECK(json[0]["outcome"] == "succeeded");
  CHECK(json[0]["windows"]["during"]["begin_s"] == 1.0);
  CHECK(json[1]["outcome"] == "refused");
  CHECK_FALSE(json[1].contains("windows"));
  const std::string text = format_scales(scales);
  CHECK_THAT(text, Catch::Contains("Scale 2: to 4 at 2.50 s: refused: failed_precondition"));
  CHECK_THAT(text, Catch::Contains("  during "));
  CHECK(format_scales({}).empty());
}

TEST_CASE("scale triggers pair in order, sort by time and refuse bad values", "[bench_scaling]") {
  auto triggers = make_scale_triggers("tcp://127.0.0.1:5710", {4, 1}, {2, 3});
  REQUIRE(triggers.is_ok());
  REQUIRE(triggers->size() == 2);
  CHECK((*triggers)[0].at_s == 1);
  CHECK((*triggers)[0].dp == 3);
  CHECK((*triggers)[1].at_s == 4);
  CHECK((*triggers)[1].dp == 2);
  CHECK(make_scale_triggers("", {}, {}).is_ok());

  CHECK_THAT(make_scale_triggers("tcp://x:1", {1, 2}, {3}).status().message(),
             Catch::Contains("2 --scale-at and 1 --scale-to"));
  CHECK_THAT(make_scale_triggers("", {1}, {3}).status().message(),
             Catch::Contains("--scale-at needs --admin"));
  CHECK_THAT(make_scale_triggers("tcp://x:1", {-1}, {3}).status().message(),
             Catch::Contains(">= 0"));
  CHECK_THAT(make_scale_triggers("tcp://x:1", {1}, {0}).status().message(),
             Catch::Contains(">= 1"));
}

TEST_CASE("eep-bench's scale flags: paired, checked, and --admin required", "[bench_scaling]") {
  auto parse = [](std::vector<std::string> list, BenchOptions& options) {
    CLI::App app;
    add_bench_options(app, options);
    app.parse(args(std::move(list)));
  };
  BenchOptions options;
  parse({"--admin", "tcp://127.0.0.1:5710", "--admin-token-file", "t", "--scale-at", "1",
         "--scale-to", "3", "--scale-at", "4", "--scale-to", "2"},
        options);
  CHECK(options.admin.endpoint == "tcp://127.0.0.1:5710");
  CHECK(options.admin.token_file == "t");
  CHECK(options.scale_at_s == std::vector<double>{1, 4});
  CHECK(options.scale_to == std::vector<int>{3, 2});

  BenchOptions other;
  CHECK_THROWS_WITH(
      parse({"--admin", "tcp://a:1", "--scale-at", "1", "--scale-at", "2", "--scale-to", "3"},
            other),
      Catch::Contains("2 --scale-at and 1 --scale-to"));
  CHECK_THROWS_WITH(parse({"--scale-at", "1", "--scale-to", "3"}, other),
                    Catch::Contains("--admin"));
  CHECK_THROWS_WITH(parse({"--admin-token-file", "t"}, other), Catch::Contains("--admin"));
  CHECK_THROWS_AS(parse({"--admin", "tcp://a:1", "--scale-at=-1", "--scale-to", "3"}, other),
                  CLI::ValidationError);
  CHECK_THROWS_AS(parse({"--admin", "tcp://a:1", "--scale-at", "1", "--scale-to", "0"}, other),
                  CLI::ValidationError);
}
