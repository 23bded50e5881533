#include "eep/bench/plot.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "eep/bench/svg.h"

namespace eep::bench {

namespace {

constexpr double kMarginLeft = 84;
constexpr double kMarginRight = 28;
constexpr double kTop = 74;          // below the title and the legend
constexpr double kBottom = 56;       // the time axis' labels and title
constexpr double kPanelGap = 30;     // room for each panel's tick labels and legend
constexpr double kLogFloorMs = 0.1;  // the latency axis starts at most here

// Soft fills for stage bands, by first appearance of a stage name; scale stages and fault phases
// share it, the names tell them apart in the legend.
const char* const kStageColors[] = {"#fdd49e", "#c6dbef", "#c7e9c0", "#dadaeb",
                                    "#fcbba1", "#fee391", "#d9d9d9", "#a6dba0"};
const char* const kTokensColor = "#1f77b4";
const char* const kRunningColor = "#2ca02c";
const char* const kItlMeanColor = "#6a3d9a";
const char* const kItlP99Color = "#ff7f0e";
const char* const kGapColor = "#d62728";
const char* const kScaleColor = "#08519c";
const char* const kFaultColor = "#a50f15";

struct Panel {
  double top = 0;
  double height = 0;
  double bottom() const { return top + height; }
};

std::string tick_label(double value) {
  if (value >= 10000) return printf_string("%.0fk", value / 1000);
  if (value == std::floor(value)) return printf_string("%.0f", value);
  return printf_string("%g", value);
}

// A value axis of one panel: linear from 0, or logarithmic between powers of ten.
class ValueAxis {
 public:
  static ValueAxis linear(double max_value) {
    ValueAxis axis;
    axis.ticks_ = axis_ticks(max_value, 5);
    axis.high_ = axis.ticks_.back();
    return axis;
  }
  static ValueAxis logarithmic(double min_positive, double max_value) {
    ValueAxis axis;
    axis.log_ = true;
    double low = std::pow(10.0, std::floor(std::log10(std::max(min_positive, kLogFloorMs))));
    low = std::min(low, 1.0);
    double high = std::pow(10.0, std::ceil(std::log10(std::max(max_value, low * 10))));
    for (double tick = low; tick <= high * 1.0001; tick *= 10) axis.ticks_.push_back(tick);
    axis.low_ = low;
    axis.high_ = high;
    return axis;
  }

  double y(const Panel& panel, double value) const {
    double fraction = 0;
    if (log_) {
      fraction = (std::log10(std::max(value, low_)) - std::log10(low_)) /
                 (std::log10(high_) - std::log10(low_));
    } else {
      fraction = high_ > 0 ? value / high_ : 0;
    }
    return panel.bottom() - std::clamp(fraction, 0.0, 1.0) * panel.height;
  }
  const std::vector<double>& ticks() const { return ticks_; }
  bool log() const { return log_; }

 private:
  bool log_ = false;
  double low_ = 0;
  double high_ = 1;
  std::vector<double> ticks_;
};

class TimelinePlot {
 public:
  TimelinePlot(const std::vector<TimelineBin>& bins, const std::vector<TimelineEvent>& events,
               const PlotOptions& options)
      : bins_(bins), events_(events), options_(options), svg_(options.width, options.height) {
    double end_s = bins.empty() ? 1 : bins.back().end_s;
    for (const TimelineEvent& event : events) {
      end_s = std::max(end_s, event.at_s);
      for (const TimelineStage& stage : event.stages) end_s = std::max(end_s, stage.end_s);
    }
    time_ticks_ = axis_ticks(end_s, 10);
    time_end_s_ = time_ticks_.back();
    for (const TimelineEvent& event : events) {
      for (const TimelineStage& stage : event.stages) {
        if (stage_colors_.count(stage.name) > 0) continue;
        const size_t idx = stage_colors_.size() % std::size(kStageColors);
        stage_colors_[stage.name] = kStageColors[idx];
        stage_order_.push_back(stage.name);
      }
    }
    const double plot_height = options.height - kTop - kBottom - 2 * kPanelGap;
    tokens_ = {kTop, plot_height * 0.38};
    running_ = {tokens_.bottom() + kPanelGap, plot_height * 0.24};
    latency_ = {running_.bottom() + kPanelGap, plot_height * 0.38};
  }

  std::string render() {
    draw_header();
    draw_stage_bands();
    draw_tokens();
    draw_running();
    draw_latency();
    draw_time_axis();
    draw_event_markers();
    return svg_.str();
  }

 private:
  double x(double time_s) const {
    const double width = options_.width - kMarginLeft - kMarginRight;
    return kMarginLeft + std::clamp(time_s / time_end_s_, 0.0, 1.0) * width;
  }
  double right() const { return options_.width - kMarginRight; }
  static double center_s(const TimelineBin& bin) { return (bin.begin_s + bin.end_s) / 2; }

  void draw_header() {
    svg_.text(kMarginLeft, 22, options_.title.empty() ? "eep-bench timeline" : options_.title,
              {15, "#111", "start", true});
    // The stage legend: one swatch per stage name, in order of first appearance.
    double legend_x = kMarginLeft;
    svg_.begin_group("legend");
    for (const std::string& name : stage_order_) {
      SvgStyle swatch = SvgStyle::stroked("#888", 0.5);
      swatch.fill = stage_colors_.at(name);
      svg_.rect(legend_x, 36, 14, 12, swatch);
      svg_.text(legend_x + 18, 46, name, {11});
      legend_x += 30 + 7.0 * static_cast<double>(name.size());
    }
    svg_.line(legend_x, 42, legend_x + 18, 42, SvgStyle::stroked(kScaleColor, 1.5, "5 3"));
    svg_.text(legend_x + 22, 46, "scale command", {11});
    legend_x += 112;
    svg_.line(legend_x, 42, legend_x + 18, 42, SvgStyle::stroked(kFaultColor, 1.5, "2 2"));
    svg_.text(legend_x + 22, 46, "fault signal", {11});
    svg_.end_group();
  }

  void draw_stage_bands() {
    for (const TimelineEvent& event : events_) {
      svg_.begin_group("stages");
      for (const TimelineStage& stage : event.stages) {
        const std::string title = event.label + ": " + stage.name + " " +
                                  printf_string("%.3f s", stage.end_s - stage.begin_s);
        for (const Panel* panel : {&tokens_, &running_, &latency_}) {
          svg_.rect(x(stage.begin_s), panel->top, x(stage.end_s) - x(stage.begin_s), panel->height,
                    SvgStyle::filled(stage_colors_.at(stage.name), 0.75), title);
        }
      }
      svg_.end_group();
    }
  }

  // Frame, grid, tick labels and the rotated title of one panel's value axis.
  void draw_panel_axes(const Panel& panel, const ValueAxis& axis, const std::string& title) {
    for (double tick : axis.ticks()) {
      const double y = axis.y(panel, tick);
      svg_.line(kMarginLeft, y, right(), y, SvgStyle::stroked("#e3e3e3", 1));
      svg_.text(kMarginLeft - 6, y + 4, tick_label(tick), {11, "#444", "end"});
    }
    for (double tick : time_ticks_) {
      svg_.line(x(tick), panel.top, x(tick), panel.bottom(), SvgStyle::stroked("#eeeeee", 1));
    }
    svg_.rect(kMarginLeft, panel.top, right() - kMarginLeft, panel.height,
              SvgStyle::stroked("#888", 1));
    svg_.text(20, panel.top + panel.height / 2, title, {12, "#222", "middle", false, -90});
  }

  // One series as a line through the bins' centres; with `skip_zero` a bin without a value
  // (no token arrived) breaks the line instead of dropping it to 0.
  template <typename Value>
  void draw_series(const Panel& panel, const ValueAxis& axis, Value value, const char* color,
                   bool skip_zero, double width = 1.6, const std::string& dash_array = "") {
    std::vector<std::pair<double, double>> points;
    for (const TimelineBin& bin : bins_) {
      const double v = value(bin);
      if (skip_zero && v <= 0) {
        svg_.polyline(points, SvgStyle::stroked(color, width, dash_array));
        points.clear();
        continue;
      }
      points.emplace_back(x(center_s(bin)), axis.y(panel, v));
    }
    svg_.polyline(points, SvgStyle::stroked(color, width, dash_array));
  }

  void draw_legend_entry(const Panel& panel, int slot, const char* color, const std::string& name) {
    const double legend_x = right() - 200.0 * (slot + 1);
    svg_.line(legend_x, panel.top - 8, legend_x + 18, panel.top - 8, SvgStyle::stroked(color, 2.5));
    svg_.text(legend_x + 23, panel.top - 4, name, {11});
  }

  void draw_tokens() {
    double max_value = 0;
    for (const TimelineBin& bin : bins_) max_value = std::max(max_value, bin.output_throughput);
    const ValueAxis axis = ValueAxis::linear(max_value);
    draw_panel_axes(tokens_, axis, "output tokens/s");
    std::vector<std::pair<double, double>> area{{x(0), tokens_.bottom()}};
    for (const TimelineBin& bin : bins_) {
      area.emplace_back(x(center_s(bin)), axis.y(tokens_, bin.output_throughput));
    }
    area.emplace_back(x(bins_.empty() ? 0 : bins_.back().end_s), tokens_.bottom());
    svg_.begin_group("series output-tokens-per-s");
    svg_.polyline(area, SvgStyle::filled(kTokensColor, 0.15));
    draw_series(
        tokens_, axis, [](const TimelineBin& bin) { return bin.output_throughput; }, kTokensColor,
        false);
    svg_.end_group();
    const double bin_s = bins_.empty() ? 1 : bins_.front().end_s - bins_.front().begin_s;
    draw_legend_entry(tokens_, 0, kTokensColor,
                      printf_string("output tokens/s (%g s bins)", bin_s));
  }

  void draw_running() {
    double max_value = 0;
    for (const TimelineBin& bin : bins_) max_value = std::max(max_value, bin.running_requests);
    const ValueAxis axis = ValueAxis::linear(max_value);
    draw_panel_axes(running_, axis, "running requests");
    svg_.begin_group("series running-requests");
    draw_series(
        running_, axis, [](const TimelineBin& bin) { return bin.running_requests; }, kRunningColor,
        false);
    svg_.end_group();
    draw_legend_entry(running_, 0, kRunningColor, "running requests (mean)");
  }

  void draw_latency() {
    double min_positive = INFINITY;
    double max_value = 0;
    const TimelineBin* longest = nullptr;
    for (const TimelineBin& bin : bins_) {
      for (double value : {bin.itl_mean_ms, bin.itl_p99_ms, bin.longest_gap_ms}) {
        if (value > 0) min_positive = std::min(min_positive, value);
        max_value = std::max(max_value, value);
      }
      if (bin.longest_gap_ms > 0 && (!longest || bin.longest_gap_ms > longest->longest_gap_ms)) {
        longest = &bin;
      }
    }
    const ValueAxis axis = ValueAxis::logarithmic(min_positive, max_value);
    draw_panel_axes(latency_, axis, "inter-token latency (ms, log)");
    svg_.begin_group("series itl-p99-ms");
    draw_series(
        latency_, axis, [](const TimelineBin& bin) { return bin.itl_p99_ms; }, kItlP99Color, true);
    svg_.end_group();
    svg_.begin_group("series itl-mean-ms");
    draw_series(
        latency_, axis, [](const TimelineBin& bin) { return bin.itl_mean_ms; }, kItlMeanColor,
        true);
    svg_.end_group();
    // Last and dashed: where it equals the P99 (one slow gap in a bin) both stay visible.
    svg_.begin_group("series longest-gap-ms");
    draw_series(
        latency_, axis, [](const TimelineBin& bin) { return bin.longest_gap_ms; }, kGapColor, true,
        1.4, "4 3");
    svg_.end_group();
    draw_legend_entry(latency_, 0, kGapColor, "longest token gap");
    draw_legend_entry(latency_, 1, kItlP99Color, "P99 ITL");
    draw_legend_entry(latency_, 2, kItlMeanColor, "mean ITL");
    if (longest == nullptr) return;
    // The run's longest gap: the bin it was widest in, labelled with its length.
    const double cx = x(center_s(*longest));
    const double cy = axis.y(latency_, longest->longest_gap_ms);
    const std::string label =
        printf_string("longest gap %.0f ms at %.1f s", longest->longest_gap_ms, longest->begin_s);
    svg_.begin_group("longest-gap");
    svg_.circle(cx, cy, 4.5, SvgStyle::stroked(kGapColor, 2), label);
    const bool left_side = cx > (kMarginLeft + right()) / 2;
    svg_.text(cx + (left_side ? -8 : 8), std::max(cy - 6, latency_.top + 12), label,
              {11, kGapColor, left_side ? "end" : "start", true});
    svg_.end_group();
  }

  void draw_time_axis() {
    const double bottom = latency_.bottom();
    for (double tick : time_ticks_) {
      svg_.line(x(tick), bottom, x(tick), bottom + 5, SvgStyle::stroked("#444", 1));
      svg_.text(x(tick), bottom + 18, tick_label(tick), {11, "#444", "middle"});
    }
    svg_.text((kMarginLeft + right()) / 2, options_.height - 12, "time since start (s)",
              {12, "#222", "middle"});
  }

  void draw_event_markers() {
    for (size_t idx = 0; idx < events_.size(); ++idx) {
      const TimelineEvent& event = events_[idx];
      const bool fault = event.kind == TimelineEvent::Kind::kFault;
      const char* color = fault ? kFaultColor : kScaleColor;
      svg_.begin_group(fault ? "event fault" : "event scale");
      const double marker_x = x(event.at_s);
      svg_.line(marker_x, tokens_.top, marker_x, latency_.bottom(),
                SvgStyle::stroked(color, 1.5, fault ? "2 2" : "5 3"));
      // Labels of events close together step down so they do not overlap.
      const double label_y = tokens_.top + 14 + 14 * static_cast<double>(idx % 3);
      const bool left_side = marker_x > right() - 180;
      svg_.text(marker_x + (left_side ? -4 : 4), label_y,
                event.label + printf_string(" @ %.2f s", event.at_s),
                {11, color, left_side ? "end" : "start", true});
      svg_.end_group();
    }
  }

  const std::vector<TimelineBin>& bins_;
  const std::vector<TimelineEvent>& events_;
  const PlotOptions& options_;
  SvgDocument svg_;
  std::vector<double> time_ticks_;
  double time_end_s_ = 1;
  std::map<std::string, const char*> stage_colors_;
  std::vector<std::string> stage_order_;
  Panel tokens_;
  Panel running_;
  Panel latency_;
};

}  // namespace

std::vector<double> axis_ticks(double max_value, int num_ticks) {
  if (!(max_value > 0) || !std::isfinite(max_value)) return {0, 1};
  const double raw_step = max_value / std::max(num_ticks, 1);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw_step)));
  double step = magnitude;
  for (double multiple : {1.0, 2.0, 5.0, 10.0}) {
    step = multiple * magnitude;
    if (step >= raw_step) break;
  }
  std::vector<double> ticks{0};
  while (ticks.back() < max_value * (1 - 1e-9)) {
    ticks.push_back(static_cast<double>(ticks.size()) * step);
  }
  return ticks;
}

std::string timeline_svg(const std::vector<TimelineBin>& bins,
                         const std::vector<TimelineEvent>& events, const PlotOptions& options) {
  return TimelinePlot(bins, events, options).render();
}

}  // namespace eep::bench
