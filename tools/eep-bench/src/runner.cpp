#include "eep/bench/runner.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "eep/bench/fault_driver.h"
#include "eep/bench/scale_driver.h"
#include "eep/bench/text_dataset.h"
#include "eep/common/token_file.h"

namespace eep::bench {

namespace net = boost::asio;

namespace {

// Time to learn the model before the run; the run itself has --timeout per request.
constexpr std::chrono::seconds kModelQueryTimeout{10};
// The bar is redrawn at most this often, so 512 completions in a burst cost one write.
constexpr std::chrono::milliseconds kProgressInterval{100};

double seconds_since(BenchClock::time_point start) {
  return std::chrono::duration<double>(BenchClock::now() - start).count();
}

// A one-line bar on stderr, redrawn in place; silent unless stderr is a terminal.
class ProgressBar {
 public:
  ProgressBar(int num_total, bool wanted)
      : num_total_(num_total), enabled_(wanted && ::isatty(STDERR_FILENO)) {}

  void update(int num_done, int num_failed, int num_running, double elapsed_s, bool final) {
    if (!enabled_) return;
    const auto now = BenchClock::now();
    if (!final && now - last_draw_ < kProgressInterval) return;
    last_draw_ = now;
    constexpr int kWidth = 30;
    const int filled = num_total_ == 0 ? kWidth : num_done * kWidth / num_total_;
    std::string bar(filled, '#');
    bar.resize(kWidth, ' ');
    std::fprintf(stderr, "\r%3d%% |%s| %d/%d [%.1fs, %d running, %d failed]\033[K",
                 num_total_ == 0 ? 100 : num_done * 100 / num_total_, bar.c_str(), num_done,
                 num_total_, elapsed_s, num_running, num_failed);
    if (final) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

 private:
  int num_total_;
  bool enabled_;
  BenchClock::time_point last_draw_{};
};

// Many concurrent sockets: lift the soft descriptor limit to the hard one.
void raise_fd_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
}

// The requests of one run on one io_context (one thread): a dispatcher that waits for each
// arrival time and for a free slot, and one coroutine per request in flight.
class BenchmarkRun {
 public:
  BenchmarkRun(const BenchOptions& options, CompletionClient client,
               std::vector<BenchRequest> requests, std::vector<double> arrivals_s)
      : options_(options),
        client_(std::move(client)),
        requests_(std::move(requests)),
        arrivals_s_(std::move(arrivals_s)),
        records_(requests_.size()),
        slot_freed_(context_),
        progress_(static_cast<int>(requests_.size()), options.progress) {}

  // Blocks until every request has a record. Returns the duration in seconds since `start`.
  double run(BenchClock::time_point start) {
    start_ = start;
    net::co_spawn(context_, dispatch(), net::detached);
    context_.run();
    progress_.update(num_done_, num_failed_, num_in_flight_, seconds_since(start_), true);
    return end_s_;
  }

  std::vector<RequestRecord> take_records() { return std::move(records_); }

 private:
  bool at_limit() const {
    return options_.max_concurrency > 0 && num_in_flight_ >= options_.max_concurrency;
  }

  net::awaitable<void> dispatch() {
    net::steady_timer arrival(context_);
    for (size_t idx = 0; idx < requests_.size(); ++idx) {
      const auto due = start_ + std::chrono::duration_cast<BenchClock::duration>(
                                    std::chrono::duration<double>(arrivals_s_[idx]));
      if (due > BenchClock::now()) {
        arrival.expires_at(due);
        boost::system::error_code ec;
        co_await arrival.async_wait(net::redirect_error(net::use_awaitable, ec));
      }
      while (at_limit()) {
        // Woken by cancel() when a request finishes.
        slot_freed_.expires_at(BenchClock::time_point::max());
        boost::system::error_code ec;
        co_await slot_freed_.async_wait(net::redirect_error(net::use_awaitable, ec));
      }
      ++num_in_flight_;
      net::co_spawn(context_, send(idx), net::detached);
    }
  }

  net::awaitable<void> send(size_t idx) {
    RequestRecord record = co_await client_.complete(requests_[idx], start_);
    if (options_.save_tokens) record.prompt_ids = requests_[idx].prompt_ids;
    --num_in_flight_;
    ++num_done_;
    if (!record.success) ++num_failed_;
    end_s_ = std::max(end_s_, seconds_since(start_));
    records_[idx] = std::move(record);
    slot_freed_.cancel();
    progress_.update(num_done_, num_failed_, num_in_flight_, seconds_since(start_), false);
  }

  const BenchOptions& options_;
  CompletionClient client_;
  std::vector<BenchRequest> requests_;
  std::vector<double> arrivals_s_;
  std::vector<RequestRecord> records_;
  net::io_context context_{1};
  net::steady_timer slot_freed_;
  ProgressBar progress_;
  BenchClock::time_point start_;
  double end_s_ = 0;
  int num_in_flight_ = 0;
  int num_done_ = 0;
  int num_failed_ = 0;
};

}  // namespace

Result<BenchReport> run_benchmark(const BenchOptions& options) {
  BenchReport report;
  EEP_ASSIGN_OR_RETURN(report.request_rate, parse_request_rate(options.request_rate));
  EEP_ASSIGN_OR_RETURN(const HttpEndpoint endpoint, parse_base_url(options.base_url));
  if (options.model.empty() || options.vocab_size == 0) {
    auto served = fetch_first_model(endpoint, options.api_key, kModelQueryTimeout);
    if (!served.is_ok() && options.model.empty()) return served.status();
    if (served.is_ok()) report.model = *served;
  }
  if (!options.model.empty()) report.model.name = options.model;
  const int vocab_size = options.vocab_size > 0        ? options.vocab_size
                         : report.model.vocab_size > 0 ? report.model.vocab_size
                                                       : BenchOptions::kDefaultVocabSize;

  RandomDatasetOptions dataset;
  dataset.num_prompts = options.num_prompts;
  dataset.input_len = options.random_input_len;
  dataset.output_len = options.random_output_len;
  dataset.range_ratio = options.random_range_ratio;
  dataset.vocab_size = vocab_size;
  dataset.seed = options.seed;
  dataset.stream_mode = options.stream_mode();
  std::vector<BenchRequest> requests;
  if (options.tokenizer.empty()) {
    EEP_ASSIGN_OR_RETURN(requests, make_random_dataset(dataset));
  } else {
    EEP_ASSIGN_OR_RETURN(const coordinator::text::HfTokenizer tokenizer,
                         coordinator::text::HfTokenizer::load(options.tokenizer));
    EEP_ASSIGN_OR_RETURN(requests, make_random_text_dataset(dataset, tokenizer));
  }
  std::vector<double> arrivals =
      arrival_times(options.num_prompts, report.request_rate, options.seed);

  CompletionClient::Options client;
  client.endpoint = endpoint;
  {
    net::io_context context;
    net::ip::tcp::resolver resolver(context);
    boost::system::error_code ec;
    client.addresses = resolver.resolve(endpoint.host, endpoint.port, ec);
    if (ec) {
      return error(ErrorCode::kUnavailable,
                   "cannot resolve " + endpoint.host + ":" + endpoint.port + ": " + ec.message());
    }
  }
  client.api_key = options.api_key;
  client.model = report.model.name;
  EEP_ASSIGN_OR_RETURN(client.api, parse_api_endpoint(options.endpoint));
  client.sampling.temperature = options.temperature;
  client.sampling.top_p = options.top_p;
  client.sampling.seed = options.request_seed;
  client.timeout = std::chrono::milliseconds(static_cast<int64_t>(options.timeout_s * 1000));

  EEP_ASSIGN_OR_RETURN(
      std::vector<ScaleTrigger> triggers,
      make_scale_triggers(options.admin.endpoint, options.scale_at_s, options.scale_to));
  EEP_ASSIGN_OR_RETURN(std::vector<FaultTrigger> fault_triggers,
                       make_fault_triggers(options.admin.endpoint, options.kill_at_s,
                                           options.kill_rank, options.kill_signal));
  AdminConnection admin;
  if (!triggers.empty() || !fault_triggers.empty()) {
    EEP_ASSIGN_OR_RETURN(admin, resolve_admin_connection(options.admin));
  }

  raise_fd_limit();
  BenchmarkRun run(options, CompletionClient(std::move(client)), std::move(requests),
                   std::move(arrivals));
  const BenchClock::time_point start = BenchClock::now();
  std::optional<ScaleDriver> scale_driver;
  if (!triggers.empty()) scale_driver.emplace(admin, triggers, start);
  std::optional<FaultDriver> fault_driver;
  if (!fault_triggers.empty()) fault_driver.emplace(admin, fault_triggers, start);
  report.duration_s = run.run(start);
  report.records = run.take_records();
  if (fault_driver) {
    report.faults = fault_driver->finish();
    attach_fault_windows(report.faults, report.records, report.duration_s);
    for (const FaultRecord& fault : report.faults) {
      if (fault.signal_s >= 0) report.events.push_back({fault.signal_s, "fault signalled"});
      if (fault.recovered_s >= 0) report.events.push_back({fault.recovered_s, "recovered"});
    }
  }
  if (scale_driver) {
    report.scales = scale_driver->finish();
    attach_windows(report.scales, report.records, report.duration_s);
    for (const ScaleRecord& scale : report.scales) {
      const std::string what = "scale to " + std::to_string(scale.trigger.dp);
      if (scale.command_s >= 0) report.events.push_back({scale.command_s, what + " sent"});
      if (scale.outcome_s >= 0) {
        report.events.push_back({scale.outcome_s, what + " " + to_string(scale.outcome)});
      }
    }
  }
  report.summary = summarize(report.records, report.duration_s);
  report.series = time_series(report.records, report.duration_s);
  return report;
}

}  // namespace eep::bench
