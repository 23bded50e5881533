// eep-bench's timeline (--plot, --timeline-csv) without a server: bins checked against the scale
// windows' own arithmetic (window_metrics) and by hand, events laid out from scale and fault
// records, the CSV, and the SVG's structure (markers, stage bands, escaping).
#include <catch2/catch.hpp>

#include <cmath>
#include <regex>
#include <sstream>

#include "bench_records.h"
#include "eep/bench/plot.h"
#include "eep/bench/svg.h"
#include "eep/bench/timeline.h"

using namespace eep::bench;
using namespace eep::bench::testing;

namespace {

std::vector<RequestRecord> sample_records() {
  std::vector<RequestRecord> records = {
      // A 1.5 s stall across [1.5, 3.0), then two quick tokens.
      streamed_at(0, 0.1, {0.5, 1.0, 1.5, 3.0, 3.1}, 3.2),
      streamed_at(1, 1.9, {2.0, 2.25, 2.5, 2.75, 3.0, 3.25, 3.5}, 3.6),
      streamed_at(2, 1.0, {1.2, 1.4}, 2.5, /*success=*/false),
      // Tokens exactly on bin edges (0.3 is not a multiple of 0.1 in binary).
      streamed_at(3, 0.0, {0.3, 0.6, 0.9}, 0.9),
  };
  RequestRecord whole;  // a non-streamed reply of 8 tokens, whole at its end
  whole.request_idx = 4;
  whole.stream = false;
  whole.start_s = 0.2;
  whole.latency_s = 2.0;
  whole.ttft_s = 2.0;
  whole.chunk_tokens = {8};
  whole.output_len = 8;
  whole.success = true;
  records.push_back(whole);
  return records;
}

ScaleRecord scale_record(int from_dp, int to_dp, double command_s, double total_s,
                         std::vector<eep::protocol::StageDuration> stages) {
  ScaleRecord scale;
  scale.trigger = {command_s, to_dp};
  scale.from_dp = from_dp;
  scale.command_s = command_s;
  scale.accepted_s = command_s + 0.01;
  scale.outcome = ScaleOutcome::kSucceeded;
  scale.total_s = total_s;
  scale.outcome_s = scale.accepted_s + total_s;
  scale.target_generation = 2;
  scale.timeline = std::move(stages);
  return scale;
}

size_t count(const std::string& text, const std::string& what) {
  size_t num = 0;
  for (size_t pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) {
    ++num;
  }
  return num;
}

}  // namespace

TEST_CASE("timeline bins agree with the scale windows bin by bin", "[bench_timeline]") {
  const std::vector<RequestRecord> records = sample_records();
  for (double bin_s : {1.0, 0.5, 0.25, 0.1}) {
    INFO("bin " << bin_s << " s");
    auto bins = timeline_bins(records, 3.3, bin_s);
    REQUIRE(bins.is_ok());
    REQUIRE(bins->size() == static_cast<size_t>(std::ceil(3.6 / bin_s - 1e-9)));
    double total_tokens = 0;
    for (const TimelineBin& bin : *bins) {
      INFO("bin [" << bin.begin_s << ", " << bin.end_s << ")");
      // The last bin also holds what happened at its end (the last reply).
      const double end_s = &bin == &bins->back() ? INFINITY : bin.end_s;
      const WindowMetrics window = window_metrics(records, bin.begin_s, end_s);
      CHECK(bin.output_tokens == window.output_tokens);
      CHECK(bin.output_throughput == Approx(window.output_tokens / bin_s));
      CHECK(bin.itl_mean_ms == Approx(window.itl.mean_ms));
      CHECK(bin.itl_p99_ms == Approx(window.itl.p99_ms));
      CHECK(bin.longest_gap_ms == Approx(window.longest_gap_ms));
      CHECK(bin.num_completed == window.num_completed);
      CHECK(bin.num_failed == window.num_failed);
      total_tokens += bin.output_tokens;
    }
    CHECK(total_tokens == 5 + 7 + 2 + 3 + 8);
  }
}

TEST_CASE("timeline bins by hand: running requests are a mean over the bin", "[bench_timeline]") {
  const std::vector<RequestRecord> records = sample_records();
  auto bins = timeline_bins(records, 3.3, 0.5);
  REQUIRE(bins.is_ok());
  REQUIRE(bins->size() == 8);  // up to the last reply at 3.6 s
  // [0, 0.5): request 0 from 0.1 (0.8 of the bin), 3 all of it, 4 from 0.2 (0.6).
  CHECK((*bins)[0].running_requests == Approx(0.8 + 1.0 + 0.6));
  // [0.5, 1.0): 0 and 4 all of it, 3 until 0.9 (0.8).
  CHECK((*bins)[1].running_requests == Approx(1.0 + 1.0 + 0.8));
  // The stall of request 0 (1.5 -> 3.0) is the longest gap of every bin it overlaps.
  CHECK((*bins)[2].longest_gap_ms == Approx(500.0));  // [1.0, 1.5): 1.0 -> 1.5
  CHECK((*bins)[3].longest_gap_ms == Approx(1500.0));
  CHECK((*bins)[4].longest_gap_ms == Approx(1500.0));
  CHECK((*bins)[5].longest_gap_ms == Approx(1500.0));
  // ... but its ITL counts once, in the bin where it ended: [3.0, 3.5) has 1.5 s and 0.1 s from
  // request 0 and 0.25 s twice from request 1 (3.0 and 3.25).
  CHECK((*bins)[6].itl_mean_ms == Approx((1500.0 + 100.0 + 250.0 + 250.0) / 4));
  CHECK((*bins)[5].itl_mean_ms == Approx(250.0));
  // Request 2 failed at 2.5, request 4's 8 tokens came whole at 2.2.
  CHECK((*bins)[5].num_failed == 1);
  CHECK((*bins)[4].output_tokens == 8 + 1 + 1);  // 4's reply, 1's tokens at 2.0 and 2.25

  CHECK_FALSE(timeline_bins(records, 3.3, 0).is_ok());
  CHECK_FALSE(timeline_bins(records, 3.3, 2).is_ok());
  auto empty = timeline_bins({}, 0, 0.5);
  REQUIRE(empty.is_ok());
  CHECK(empty->size() == 1);
}

TEST_CASE("timeline events: scale stages end to end, fault phases, in time order",
          "[bench_timeline]") {
  std::vector<ScaleRecord> scales = {
      scale_record(2, 3, 1.0, 2.0, {{"WAIT_WORKERS", 0.5}, {"WAIT_ACKS", 1.5}}),
      scale_record(3, 2, 4.0, 1.0, {{"DRAIN_LEAVING", 0.6}, {"RETIRE_LEAVING", 0.4}}),
  };
  ScaleRecord refused;
  refused.trigger = {5.0, 9};
  refused.command_s = 5.0;
  refused.outcome = ScaleOutcome::kRefused;
  scales.push_back(refused);
  ScaleRecord never;  // the requests ended first: no marker
  never.trigger = {50, 4};
  scales.push_back(never);
  FaultRecord fault;
  fault.at_s = 2.5;
  fault.signal_s = 2.52;
  fault.recovered_s = 3.0;
  fault.back_to_size_s = 3.8;
  fault.targets = {{1, 9, "w2", 4242}};
  const std::vector<TimelineEvent> events = timeline_events(scales, {fault});
  REQUIRE(events.size() == 4);
  CHECK(events[0].label == "scale 2->3 succeeded");
  CHECK(events[0].kind == TimelineEvent::Kind::kScale);
  REQUIRE(events[0].stages.size() == 2);
  // The coordinator started it when it answered (accepted at 1.01 = outcome 3.01 - 2.0).
  CHECK(events[0].stages[0].name == "WAIT_WORKERS");
  CHECK(events[0].stages[0].begin_s == Approx(1.01));
  CHECK(events[0].stages[0].end_s == Approx(1.51));
  CHECK(events[0].stages[1].begin_s == Approx(1.51));
  CHECK(events[0].stages[1].end_s == Approx(3.01));
  CHECK(events[1].kind == TimelineEvent::Kind::kFault);
  CHECK(events[1].label == "kill rank 1 (KILL)");
  REQUIRE(events[1].stages.size() == 2);
  CHECK(events[1].stages[0].name == "RECOVER");
  CHECK(events[1].stages[0].begin_s == 2.52);
  CHECK(events[1].stages[1].name == "BACK_TO_SIZE");
  CHECK(events[1].stages[1].end_s == 3.8);
  CHECK(events[2].label == "scale 3->2 succeeded");
  CHECK(events[3].label == "scale to 9 refused");
  CHECK(events[3].stages.empty());
}

TEST_CASE("timeline CSV: one row per bin with its stage and markers", "[bench_timeline]") {
  const std::vector<RequestRecord> records = sample_records();
  auto bins = timeline_bins(records, 3.3, 0.5);
  REQUIRE(bins.is_ok());
  std::vector<ScaleRecord> scales = {
      scale_record(2, 3, 1.0, 1.0, {{"WAIT_WORKERS", 0.5}, {"WAIT_ACKS", 0.5}})};
  const std::string csv = timeline_csv(*bins, timeline_events(scales, {}));
  std::vector<std::string> lines;
  std::istringstream in(csv);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  REQUIRE(lines.size() == 1 + bins->size());
  CHECK(lines[0] ==
        "begin_s,end_s,output_tokens,output_tokens_per_s,running_requests,completed,failed,"
        "itl_mean_ms,itl_p99_ms,longest_gap_ms,stage,events");
  CHECK(lines[1].rfind("0.000,0.500,1,2.0,2.40,0,0,", 0) == 0);
  CHECK(lines[3].rfind("1.000,1.500,", 0) == 0);
  CHECK_THAT(lines[3], Catch::EndsWith(",,scale 2->3 succeeded"));  // sent at 1.0, starts 1.01
  CHECK_THAT(lines[4], Catch::EndsWith(",WAIT_WORKERS,"));          // live at 1.5
  CHECK_THAT(lines[5], Catch::EndsWith(",WAIT_ACKS,"));
  CHECK_THAT(lines[6], Catch::EndsWith(",,"));
}

TEST_CASE("axis ticks are round steps from 0 past the maximum", "[bench_timeline]") {
  CHECK(axis_ticks(9.5, 10) == std::vector<double>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  CHECK(axis_ticks(3400, 5) == std::vector<double>{0, 1000, 2000, 3000, 4000});
  CHECK(axis_ticks(58, 5) == std::vector<double>{0, 20, 40, 60});
  CHECK(axis_ticks(0.7, 5) == std::vector<double>{0, 0.2, 0.4, 0.6000000000000001, 0.8});
  CHECK(axis_ticks(0, 5) == std::vector<double>{0, 1});
}

TEST_CASE("the timeline SVG marks every event and shades its stages", "[bench_timeline]") {
  const std::vector<RequestRecord> records = sample_records();
  auto bins = timeline_bins(records, 3.3, 0.25);
  REQUIRE(bins.is_ok());
  std::vector<ScaleRecord> scales = {
      scale_record(2, 3, 0.5, 1.0, {{"WAIT_WORKERS", 0.4}, {"WAIT_ACKS", 0.6}}),
      scale_record(3, 2, 2.0, 1.0, {{"DRAIN_LEAVING", 0.5}, {"RETIRE_LEAVING", 0.5}})};
  FaultRecord fault;
  fault.signal_s = 3.0;
  fault.recovered_s = 3.2;
  fault.targets = {{0, 19, "w1", 7}};
  PlotOptions options;
  options.title = "a <test> & \"title\"";
  const std::string svg = timeline_svg(*bins, timeline_events(scales, {fault}), options);

  CHECK(svg.rfind("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg ", 0) == 0);
  CHECK_THAT(svg, Catch::EndsWith("</svg>\n"));
  CHECK(count(svg, "<g class=\"event scale\">") == 2);
  CHECK(count(svg, "<g class=\"event fault\">") == 1);
  CHECK(count(svg, "<g") == count(svg, "</g>"));
  CHECK_THAT(svg, Catch::Contains("scale 2-&gt;3 succeeded @ 0.50 s"));
  CHECK_THAT(svg, Catch::Contains("scale 3-&gt;2 succeeded @ 2.00 s"));
  CHECK_THAT(svg, Catch::Contains("kill rank 0 (STOP) @ 3.00 s"));
  // Each stage is a band in each of the three panels, with the stage and its length as tooltip.
  CHECK(count(svg, "<title>scale 2-&gt;3 succeeded: WAIT_WORKERS 0.400 s</title>") == 3);
  CHECK(count(svg, "<title>scale 3-&gt;2 succeeded: RETIRE_LEAVING 0.500 s</title>") == 3);
  CHECK(count(svg, "<title>kill rank 0 (STOP): RECOVER 0.200 s</title>") == 3);
  // Legend: each stage name once, with its swatch.
  for (const char* stage : {"WAIT_WORKERS", "WAIT_ACKS", "DRAIN_LEAVING", "RETIRE_LEAVING"}) {
    CHECK(count(svg, std::string(">") + stage + "</text>") == 1);
  }
  CHECK_THAT(svg, Catch::Contains(">a &lt;test&gt; &amp; &quot;title&quot;</text>"));
  // Axes with units, and the run's longest gap labelled (request 0's 1.5 s stall).
  for (const char* label : {">output tokens/s</text>", ">running requests</text>",
                            ">inter-token latency (ms, log)</text>", ">time since start (s)</text>",
                            ">longest gap 1500 ms at 1.5 s</text>"}) {
    CHECK_THAT(svg, Catch::Contains(label));
  }
  for (const char* series :
       {"output-tokens-per-s", "running-requests", "itl-mean-ms", "itl-p99-ms", "longest-gap-ms"}) {
    CHECK_THAT(svg, Catch::Contains(std::string("<g class=\"series ") + series + "\">"));
  }
  // Every number is finite: no NaN or inf reaches an attribute.
  CHECK_FALSE(std::regex_search(svg, std::regex("nan|inf", std::regex::icase)));
}

TEST_CASE("svg writer escapes text and attributes", "[bench_timeline]") {
  CHECK(xml_escape("a<b>&\"c'\x01") == "a&lt;b&gt;&amp;&quot;c&apos;");
  SvgDocument svg(10, 20);
  svg.rect(1, 2, 3, 4, SvgStyle::filled("#abc", 0.5), "x<y");
  svg.begin_group("g1");
  svg.text(1.005, 2, "t", SvgTextStyle(9, "#000", "end", true, -90));
  const std::string text = svg.str();
  CHECK_THAT(text, Catch::Contains("<rect x=\"1\" y=\"2\" width=\"3\" height=\"4\" fill=\"#abc\" "
                                   "opacity=\"0.5\"><title>x&lt;y</title></rect>"));
  CHECK_THAT(text, Catch::Contains("font-weight=\"bold\" transform=\"rotate(-90 1 2)\">t</text>"));
  CHECK_THAT(text, Catch::EndsWith("</g>\n</svg>\n"));  // the open group closed
}
