#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "eep/bench/plot.h"
#include "eep/bench/runner.h"
#include "eep/bench/timeline.h"

namespace eep::bench {

std::string format_report(const BenchOptions& options, const BenchReport& report) {
  std::ostringstream out;
  out << "Model: " << report.model.name << "\n";
  out << "Endpoint: " << options.endpoint
      << (options.tokenizer.empty() ? " (token-id prompts)" : " (text prompts)") << "\n";
  out << "Traffic request rate: " << options.request_rate << "\n";
  out << "Maximum request concurrency: "
      << (options.max_concurrency > 0 ? std::to_string(options.max_concurrency) : "None") << "\n";
  out << format_errors(report.records);
  TableOptions table;
  if (options.max_concurrency > 0) table.max_concurrency = options.max_concurrency;
  if (!std::isinf(report.request_rate)) table.request_rate = report.request_rate;
  out << format_table(report.summary, table);
  out << format_scales(report.scales);
  out << format_faults(report.faults);
  return out.str();
}

nlohmann::json report_to_json(const BenchOptions& options, const BenchReport& report) {
  nlohmann::json config{{"admin", options.admin.endpoint},
                        {"scale_at_s", options.scale_at_s},
                        {"scale_to", options.scale_to},
                        {"kill_at_s", options.kill_at_s},
                        {"kill_rank", options.kill_rank},
                        {"kill_signal", options.kill_signal},
                        {"base_url", options.base_url},
                        {"model", report.model.name},
                        {"endpoint", options.endpoint},
                        {"tokenizer", options.tokenizer},
                        {"num_prompts", options.num_prompts},
                        {"random_input_len", options.random_input_len},
                        {"random_output_len", options.random_output_len},
                        {"random_range_ratio", options.random_range_ratio},
                        {"request_rate", options.request_rate},
                        {"max_concurrency", options.max_concurrency},
                        {"seed", options.seed},
                        {"stream", options.mix_stream ? "mix"
                                   : options.stream   ? "on"
                                                      : "off"},
                        {"temperature", options.temperature},
                        {"top_p", options.top_p},
                        {"timeout_s", options.timeout_s}};
  nlohmann::json events = nlohmann::json::array();
  for (const RunEvent& event : report.events) {
    events.push_back({{"time_s", event.time_s}, {"what", event.what}});
  }
  nlohmann::json requests = nlohmann::json::array();
  for (const RequestRecord& record : report.records) {
    requests.push_back(to_json(record, options.save_tokens));
  }
  return {{"config", std::move(config)},           {"summary", to_json(report.summary)},
          {"time_series", to_json(report.series)}, {"events", std::move(events)},
          {"scales", to_json(report.scales)},      {"faults", to_json(report.faults)},
          {"requests", std::move(requests)}};
}

namespace {

// `flag`: the option that named the file, for the message.
Status write_text_file(const std::string& path, const std::string& content, const char* flag) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  if (!out) {
    return error(ErrorCode::kIoError, std::string("cannot write ") + flag + " file '" + path +
                                          "': " + std::strerror(errno));
  }
  return Status::ok();
}

}  // namespace

Status write_timeline_files(const BenchOptions& options, const BenchReport& report) {
  if (options.plot.empty() && options.timeline_csv.empty()) return Status::ok();
  EEP_ASSIGN_OR_RETURN(const std::vector<TimelineBin> bins,
                       timeline_bins(report.records, report.duration_s, options.timeline_bin_s));
  const std::vector<TimelineEvent> events = timeline_events(report.scales, report.faults);
  if (!options.plot.empty()) {
    PlotOptions plot;
    plot.title =
        printf_string("eep-bench: %s, %d prompts, %d in / %d out tokens, rate %s, ",
                      report.model.name.c_str(), options.num_prompts, options.random_input_len,
                      options.random_output_len, options.request_rate.c_str()) +
        (options.max_concurrency > 0 ? printf_string("concurrency %d", options.max_concurrency)
                                     : std::string("no concurrency limit")) +
        printf_string(": %.2f s, %.1f tok/s", report.summary.duration_s,
                      report.summary.output_throughput);
    EEP_RETURN_IF_ERROR(write_text_file(options.plot, timeline_svg(bins, events, plot), "--plot"));
  }
  if (!options.timeline_csv.empty()) {
    EEP_RETURN_IF_ERROR(
        write_text_file(options.timeline_csv, timeline_csv(bins, events), "--timeline-csv"));
  }
  return Status::ok();
}

}  // namespace eep::bench
