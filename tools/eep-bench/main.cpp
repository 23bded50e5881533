// eep-bench: a load generator in the style of `vllm bench serve` against the OpenAI-compatible
// /v1/completions (or /v1/chat/completions) endpoint: random prompts (token ids, or text from the
// model's tokenizer with --tokenizer), Poisson or burst arrivals, a concurrency limit; prints
// vLLM's result table and writes per-request records and a per-second series.
//   eep-bench ... --endpoint /v1/chat/completions --tokenizer MODEL_DIR (text prompts, chat)
//   eep-bench --base-url http://127.0.0.1:8000 --num-prompts 64 --random-input-len 32
//             --random-output-len 32 [--request-rate R] [--max-concurrency N] [--result-json F]
//             [--admin ADDR --scale-at SECONDS --scale-to N ...] (scales during the run)
//             [--admin ADDR --kill-at SECONDS --kill-rank R [--kill-signal KILL|STOP] ...]
//             (faults during the run)
//             [--plot FILE.svg] [--timeline-csv FILE.csv] [--timeline-bin SECONDS] (timeline)
#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>

#include "eep/bench/runner.h"
#include "eep/common/config.h"
#include "eep/common/status.h"

int main(int argc, char** argv) {
  CLI::App app{"eep-bench: serving benchmark (the table of `vllm bench serve`)"};
  eep::bench::BenchOptions options;
  eep::bench::add_bench_options(app, options);
  eep::add_config_option(app);
  if (auto exit_code = eep::parse_args(app, argc, argv)) return *exit_code;

  auto report = eep::bench::run_benchmark(options);
  if (!report.is_ok()) {
    std::cerr << "eep-bench: " << report.status().to_string() << "\n";
    return 2;
  }
  std::cout << eep::bench::format_report(options, *report) << std::flush;
  if (!options.result_json.empty()) {
    std::ofstream out(options.result_json);
    out << eep::bench::report_to_json(options, *report).dump(1) << "\n";
    if (!out) {
      std::cerr << "eep-bench: cannot write " << options.result_json << "\n";
      return 2;
    }
  }
  if (eep::Status written = eep::bench::write_timeline_files(options, *report); !written.is_ok()) {
    std::cerr << "eep-bench: " << written.to_string() << "\n";
    return 2;
  }
  if (!options.plot.empty()) std::cout << "Timeline plot: " << options.plot << "\n";
  if (!options.timeline_csv.empty()) std::cout << "Timeline CSV: " << options.timeline_csv << "\n";
  return 0;
}
