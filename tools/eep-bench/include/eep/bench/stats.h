// What eep-bench measured and the numbers it reports, as pure functions over per-request
// records, so that the definitions (those of `vllm bench serve`) are unit-tested without a server.
//   TTFT: request sent -> first token chunk received.
//   TPOT: (latency - ttft) / (output_len - 1), per request with output_len > 1 (streamed only:
//         a non-streamed reply has no time per token).
//   ITL:  the gaps between consecutive token chunks, pooled over all requests.
// All times are seconds since the benchmark started; reported latencies are milliseconds.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace eep::bench {

struct RequestRecord {
  int64_t request_idx = 0;
  int prompt_len = 0;
  int max_tokens = 0;  // what the request asked for
  bool stream = true;
  double start_s = 0;             // when the request was sent (after any concurrency wait)
  double ttft_s = 0;              // streamed: first token chunk; not streamed: the whole reply
  double latency_s = 0;           // sent -> reply complete (or failed)
  std::vector<double> itl_s;      // gaps between consecutive token chunks
  std::vector<int> chunk_tokens;  // tokens in each token chunk, the first included
  int output_len = 0;             // usage.completion_tokens, else token ids received, else chunks
  bool success = false;
  std::string error;  // set when !success
  std::string finish_reason;
  std::vector<int32_t> prompt_ids;  // kept only with --save-tokens
  std::vector<int32_t> output_ids;  // the ids the server sent (choices[0].token_ids), if any
  std::string output_text;

  double end_s() const { return start_s + latency_s; }
};

struct LatencyStats {
  double mean_ms = 0;
  double median_ms = 0;
  double p99_ms = 0;
};

struct Summary {
  int64_t num_completed = 0;
  int64_t num_failed = 0;
  double duration_s = 0;
  int64_t total_input_tokens = 0;  // successful requests only, as vLLM
  int64_t total_output_tokens = 0;
  double request_throughput = 0;  // per second of duration
  double output_throughput = 0;
  double total_token_throughput = 0;
  double peak_output_throughput = 0;    // most output tokens in one 1-second bucket
  double peak_concurrent_requests = 0;  // most requests active in one 1-second bucket
  LatencyStats ttft;
  LatencyStats tpot;
  LatencyStats itl;
  LatencyStats e2el;
};

// numpy.percentile's default (linear interpolation between closest ranks); 0 for no values.
double percentile(std::vector<double> values, double pct);
LatencyStats latency_stats_ms(const std::vector<double>& seconds);

// `duration_s`: the wall time of the run (first request sent -> last reply), which the
// throughputs divide by.
Summary summarize(const std::vector<RequestRecord>& records, double duration_s);

// One row per second of the run, for plots. A request counts as running in every second it
// overlaps (the same buckets as vLLM's peak concurrency); tokens go to the second they arrived.
struct SecondSample {
  int second = 0;
  double output_tokens = 0;
  int completed = 0;
  int failed = 0;
  int running = 0;
};
std::vector<SecondSample> time_series(const std::vector<RequestRecord>& records, double duration_s);

// The result block of `vllm bench serve`, character for character. `max_concurrency` and
// `request_rate` rows appear only when they were set, as in vLLM.
struct TableOptions {
  std::optional<int> max_concurrency;
  std::optional<double> request_rate;  // nullopt: inf
};
std::string format_table(const Summary& summary, const TableOptions& options);
// "Error 0: ..." lines for the first `max_errors` failed requests; empty when none failed.
std::string format_errors(const std::vector<RequestRecord>& records, int max_errors = 10);

nlohmann::json to_json(const Summary& summary);
nlohmann::json to_json(const RequestRecord& record, bool with_tokens);
nlohmann::json to_json(const std::vector<SecondSample>& series);

}  // namespace eep::bench
