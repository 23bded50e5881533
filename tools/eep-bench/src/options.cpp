#include <CLI/CLI.hpp>
#include <cmath>
#include <limits>

#include "eep/bench/runner.h"

namespace eep::bench {

void add_bench_options(CLI::App& app, BenchOptions& options) {
  app.add_option("--base-url", options.base_url, "Server to load, http://host:port[/prefix]")
      ->capture_default_str();
  app.add_option("--model", options.model,
                 "Model name to send; default: the first one GET /v1/models lists");
  app.add_option("--api-key", options.api_key, "Sent as 'Authorization: Bearer KEY'");
  app.add_option("--endpoint", options.endpoint,
                 "/v1/completions, or /v1/chat/completions (each prompt one user message; needs "
                 "--tokenizer)")
      ->capture_default_str()
      ->check([](const std::string& path) {
        auto parsed = parse_api_endpoint(path);
        return parsed.is_ok() ? std::string() : parsed.status().message();
      });
  app.add_option("--tokenizer", options.tokenizer,
                 "Directory with the model's tokenizer.json (its checkpoint): the random prompts "
                 "become text, decoded from ids drawn from its vocabulary (as vllm bench serve)")
      ->check(CLI::ExistingDirectory);
  app.add_option("--num-prompts", options.num_prompts, "Requests to send")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--random-input-len", options.random_input_len, "Prompt tokens per request")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--random-output-len", options.random_output_len,
                 "Tokens to generate per request (max_tokens, with ignore_eos)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--random-range-ratio", options.random_range_ratio,
                 "Lengths drawn from [len * (1 - r), len * (1 + r)]; 0 = fixed")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 0.999999));
  app.add_option("--vocab-size", options.vocab_size,
                 "Random prompt ids are drawn from [0, N); default: the model's vocabulary if "
                 "/v1/models reports it, else 256");
  app.add_option("--request-rate", options.request_rate,
                 "Mean requests per second of a Poisson arrival process, or inf (all at once)")
      ->capture_default_str();
  app.add_option("--max-concurrency", options.max_concurrency,
                 "Most requests in flight at once; 0 = no limit")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seed", options.seed, "Seed of the dataset and the arrivals")
      ->capture_default_str();
  app.add_option_function<uint64_t>(
      "--request-seed", [&options](const uint64_t& seed) { options.request_seed = seed; },
      "Send seed = S + request index in every request (for sampled runs)");
  app.add_flag("--stream,!--no-stream", options.stream,
               "Stream replies (server-sent events); default on");
  app.add_flag("--mix-stream", options.mix_stream,
               "Alternate: even request ids streamed, odd not (overrides --stream)");
  app.add_option("--temperature", options.temperature, "Sampling temperature; 0 = greedy")
      ->capture_default_str();
  app.add_option("--top-p", options.top_p)->capture_default_str();
  app.add_option("--timeout", options.timeout_s, "Seconds one request may take, connect to end")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--result-json", options.result_json,
                 "Write the records, the per-second series and the summary here");
  app.add_flag("--save-tokens", options.save_tokens,
               "Put prompt and output token ids (and text) into the JSON records");
  app.add_option("--plot", options.plot,
                 "Write the run's timeline here as SVG: output tokens/s, running requests, mean "
                 "and P99 inter-token latency and the longest token gap over time, each scale and "
                 "fault marked with its stages shaded");
  app.add_option("--timeline-csv", options.timeline_csv,
                 "Write the same timeline as CSV, one row per bin");
  app.add_option("--timeline-bin", options.timeline_bin_s,
                 "Width of the timeline's bins in seconds (--plot, --timeline-csv)")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 1.0));
  app.add_flag("--progress,!--no-progress", options.progress,
               "Progress bar on stderr (only when it is a terminal)")
      ->capture_default_str();

  CLI::Option* admin = add_admin_client_options(
      app, options.admin,
      "Coordinator admin endpoint (e.g. tcp://127.0.0.1:5710), for --scale-at and --kill-at");
  app.get_option("--token-file")->needs(admin);
  app.add_option("--scale-at", options.scale_at_s,
                 "Seconds after the start at which to send a scale; repeatable, paired in order "
                 "with --scale-to")
      ->needs(admin);
  app.add_option("--scale-to", options.scale_to,
                 "Fleet size (dp) of the scale sent at the matching --scale-at")
      ->needs(admin);
  app.add_option("--kill-at", options.kill_at_s,
                 "Seconds after the start at which to signal the worker of a rank (its pid from "
                 "the coordinator's status: local workers); repeatable, paired in order with "
                 "--kill-rank; equal times make one fault")
      ->needs(admin);
  app.add_option("--kill-rank", options.kill_rank,
                 "Rank (in the generation live at that time) whose worker the matching --kill-at "
                 "signals")
      ->needs(admin);
  app.add_option("--kill-signal", options.kill_signal,
                 "KILL (default) or STOP: once for every fault, or once per --kill-at")
      ->needs(admin);
  // Counts that do not pair up, negative times and sizes below 1 are errors of the command line,
  // before anything is sent, with messages that say what the flags mean.
  app.callback([&options] {
    if (options.endpoint == api_path(ApiEndpoint::kChatCompletions) && options.tokenizer.empty()) {
      throw CLI::ValidationError(
          "--endpoint /v1/chat/completions sends text: pass --tokenizer DIR (the directory with "
          "the model's tokenizer.json)");
    }
    auto triggers =
        make_scale_triggers(options.admin.endpoint, options.scale_at_s, options.scale_to);
    if (!triggers.is_ok()) throw CLI::ValidationError(triggers.status().message());
    auto faults = make_fault_triggers(options.admin.endpoint, options.kill_at_s, options.kill_rank,
                                      options.kill_signal);
    if (!faults.is_ok()) throw CLI::ValidationError(faults.status().message());
  });
}

Result<double> parse_request_rate(const std::string& text) {
  if (text == "inf" || text == "infinity" || text == "Inf") {
    return std::numeric_limits<double>::infinity();
  }
  size_t used = 0;
  double rate = 0;
  try {
    rate = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || !(rate > 0)) {
    return error(ErrorCode::kInvalidArgument,
                 "--request-rate must be a positive number of requests per second or inf, not '" +
                     text + "'");
  }
  return rate;
}

}  // namespace eep::bench
