// `eep-bench --plot FILE`: the timeline of a run as one SVG picture (svg.h), three panels over a
// shared time axis in seconds since the start:
//   output tokens/s (per bin),
//   running requests (mean per bin),
//   inter-token latency in ms: mean and P99 per bin, and the longest token gap, with the run's
//     longest gap marked and labelled;
// each scale and fault as a vertical marker labelled with what it was, its stages as shaded bands
// across the panels (one colour per stage name, a legend on top). Markers are <g class="event">
// groups and bands <rect class="stage"> children with the stage as tooltip, so a tool or a test
// finds them in the file.
#pragma once

#include <string>
#include <vector>

#include "eep/bench/timeline.h"

namespace eep::bench {

struct PlotOptions {
  std::string title;  // first line on top, e.g. the model and the load
  double width = 1100;
  double height = 820;
};

std::string timeline_svg(const std::vector<TimelineBin>& bins,
                         const std::vector<TimelineEvent>& events, const PlotOptions& options);

// Tick values for an axis over [0, max_value]: about `num_ticks` round steps (1, 2 or 5 times a
// power of ten), from 0 to the first tick at or above max_value. max_value <= 0 gives {0, 1}.
std::vector<double> axis_ticks(double max_value, int num_ticks);

}  // namespace eep::bench
