// One eep-bench run: asks the server for its model, builds the random dataset, sends the
// requests at their arrival times under the concurrency limit (all on one thread's io_context),
// and returns every request's record with the summary and the per-second series.
//
// Scales (--scale-at / --scale-to over the admin socket) are sent by a ScaleDriver on a thread of
// its own, on the same clock; they add RunEvents, and the report cuts the records into before /
// during / after windows by time (scaling.h).
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eep/bench/faults.h"
#include "eep/bench/http_client.h"
#include "eep/bench/scaling.h"
#include "eep/bench/stats.h"
#include "eep/bench/workload.h"
#include "eep/common/admin_client.h"
#include "eep/common/status.h"

namespace CLI {
class App;
}  // namespace CLI

namespace eep::bench {

struct BenchOptions {
  std::string base_url = "http://127.0.0.1:8000";
  std::string model;  // empty: the first one GET /v1/models lists
  std::string api_key;
  std::string endpoint = "/v1/completions";  // or /v1/chat/completions (needs a tokenizer)
  // A directory with the model's tokenizer.json: the random prompts are text (text_dataset.h).
  // Empty: token-id prompts.
  std::string tokenizer;
  int num_prompts = 1000;
  int random_input_len = 1024;
  int random_output_len = 128;
  double random_range_ratio = 0;
  int vocab_size = 0;                // 0: what /v1/models reports, else kDefaultVocabSize
  std::string request_rate = "inf";  // requests per second or "inf"
  int max_concurrency = 0;           // 0: unlimited
  uint64_t seed = 0;
  std::optional<uint64_t> request_seed;  // none: requests carry no seed
  bool stream = true;
  bool mix_stream = false;  // overrides stream
  double temperature = 0;
  double top_p = 1;
  double timeout_s = 600;
  std::string result_json;   // empty: none written
  bool save_tokens = false;  // prompt and output ids in the JSON records
  bool progress = true;      // a progress bar, when stderr is a terminal
  std::string plot;          // SVG timeline (plot.h); empty: none
  std::string timeline_csv;  // the same series as CSV (timeline.h); empty: none
  double timeline_bin_s = 0.5;
  // Scales during the run (scaling.h): the i-th --scale-at goes with the i-th --scale-to.
  AdminClientOptions admin;  // the coordinator's admin socket; required by --scale-at
  std::vector<double> scale_at_s;
  std::vector<int> scale_to;
  // Faults during the run (faults.h): the i-th --kill-at goes with the i-th --kill-rank.
  std::vector<double> kill_at_s;
  std::vector<int> kill_rank;
  std::vector<std::string> kill_signal;  // KILL (default) or STOP: once, or once per --kill-at

  static constexpr int kDefaultVocabSize = 256;

  StreamMode stream_mode() const {
    return mix_stream ? StreamMode::kMix : stream ? StreamMode::kStream : StreamMode::kNoStream;
  }
};

// Registers every flag of eep-bench on `app`, bound to `options`.
void add_bench_options(CLI::App& app, BenchOptions& options);

// "inf" (or "infinity") -> +inf; a positive number; anything else is an error.
Result<double> parse_request_rate(const std::string& text);

// Something that happened during the run at a time (a scale sent, its outcome).
struct RunEvent {
  double time_s = 0;
  std::string what;
};

struct BenchReport {
  ServedModel model;
  double request_rate = std::numeric_limits<double>::infinity();
  double duration_s = 0;
  std::vector<RequestRecord> records;  // by request_idx
  std::vector<RunEvent> events;
  std::vector<ScaleRecord> scales;  // one per --scale-at, in time order
  std::vector<FaultRecord> faults;  // one per --kill-at time, in time order
  Summary summary;
  std::vector<SecondSample> series;
};

// Errors: bad options, server unreachable before the run. Failed requests are not errors.
Result<BenchReport> run_benchmark(const BenchOptions& options);

// The text the tool prints: a short header, the first errors, the vLLM table.
std::string format_report(const BenchOptions& options, const BenchReport& report);
nlohmann::json report_to_json(const BenchOptions& options, const BenchReport& report);

// Writes --plot and --timeline-csv, when asked for. Errors: a bad bin width, a file that cannot
// be written (named in the message).
Status write_timeline_files(const BenchOptions& options, const BenchReport& report);

}  // namespace eep::bench
