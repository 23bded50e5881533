// eep-bench as a process against a fake OpenAI server (tests/helpers/fake_openai_server.py,
// python3) that streams fixed tokens and records what it saw: the table and the JSON must agree
// with the server, faults must become failed requests (never a crash), 512 streams must work.
#include <algorithm>
#include <regex>

#include "eep/common/subprocess.h"
#include "fleet.h"

using namespace eep;
using namespace eep::testing;

namespace {

// The fake server as a child process on a loopback port it picks itself.
class FakeOpenAiServer {
 public:
  explicit FakeOpenAiServer(std::vector<std::string> extra_args = {}) {
    const auto python = find_in_path("python3");
    REQUIRE(python);  // the fake server needs python3 (Debian's python3 package)
    std::vector<std::string> argv = {
        *python,        std::string(EEP_SOURCE_DIR) + "/tests/helpers/fake_openai_server.py",
        "--port-file",  dir_.file("port"),
        "--stats-file", dir_.file("stats.json")};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    SpawnOptions options;
    options.log_path = dir_.file("server.log");
    auto child = ChildProcess::spawn(argv, options);
    REQUIRE(child.is_ok());
    child_ = std::move(*child);
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!std::filesystem::exists(dir_.file("port"))) {
      REQUIRE(child_.running());
      REQUIRE(std::chrono::steady_clock::now() < deadline);
      std::this_thread::sleep_for(20ms);
    }
    port_ = std::stoi(read_file(dir_.file("port")));
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // The server counts a request after its last write, which may be just after the client saw
  // [DONE] and exited: wait (bounded) until only `num_stalled` requests are still running.
  json stats(int num_stalled = 0) const {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    json stats = json::parse(read_file(dir_.file("stats.json")));
    while (stats["running"] != num_stalled && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(20ms);
      stats = json::parse(read_file(dir_.file("stats.json")));
    }
    return stats;
  }
  std::string result_path() const { return dir_.file("result.json"); }

 private:
  TempDir dir_;
  ChildProcess child_;
  int port_ = 0;
};

CommandResult run_bench(const FakeOpenAiServer& server, std::vector<std::string> args,
                        std::chrono::milliseconds timeout = 60s) {
  std::vector<std::string> argv = {bin("eep-bench"), "--base-url", server.url(), "--result-json",
                                   server.result_path()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, timeout);
}

// The value of a row of the table: "Successful requests:   512   " -> "512".
std::string table_value(const std::string& output, const std::string& label) {
  const std::regex row("(^|\n)" + label + " +([^ \n]+) *\n");
  std::smatch match;
  if (!std::regex_search(output, match, row)) return "<no row '" + label + "'>";
  return match[2];
}

// The most requests in flight at one instant, from the records' [start, end] intervals.
int max_overlap(const json& requests) {
  std::vector<std::pair<double, int>> edges;
  for (const json& record : requests) {
    const double start_s = record["start_s"];
    edges.push_back({start_s, +1});
    edges.push_back({start_s + record["latency_s"].get<double>(), -1});
  }
  std::sort(edges.begin(), edges.end());  // at equal times the end (-1) comes first
  int running = 0;
  int most = 0;
  for (const auto& edge : edges) most = std::max(most, running += edge.second);
  return most;
}

}  // namespace

TEST_CASE("eep-bench: table and JSON agree with what the server saw", "[bench]") {
  FakeOpenAiServer server({"--token-delay-ms", "3"});
  const auto result = run_bench(server, {"--num-prompts", "120", "--random-input-len", "24",
                                         "--random-output-len", "12", "--random-range-ratio", "0.5",
                                         "--max-concurrency", "16", "--mix-stream", "--seed", "7"});
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  CHECK(result.output.find('\r') == std::string::npos);  // no progress bar without a terminal

  const json stats = server.stats();
  const json report = json::parse(read_file(server.result_path()));
  const json& summary = report["summary"];
  CHECK(stats["num_requests"] == 120);
  CHECK(stats["num_ok"] == 120);
  CHECK(stats["num_streamed"] == 60);
  CHECK(stats["bad_requests"].empty());
  CHECK(summary["completed"] == 120);
  CHECK(summary["failed"] == 0);
  CHECK(summary["total_input_tokens"] == stats["prompt_tokens"]);
  CHECK(summary["total_output_tokens"] == stats["completion_tokens"]);
  CHECK(report["config"]["model"] == "fake-model");  // learned from /v1/models

  CHECK(table_value(result.output, "Successful requests:") == "120");
  CHECK(table_value(result.output, "Total input tokens:") == stats["prompt_tokens"].dump());
  CHECK(table_value(result.output, "Total generated tokens:") == stats["completion_tokens"].dump());
  CHECK(table_value(result.output, "Maximum request concurrency:") == "16");
  CHECK(result.output.find("Failed requests") == std::string::npos);
  const double duration_s = summary["duration_s"];
  CHECK(std::stod(table_value(result.output, "Request throughput \\(req/s\\):")) ==
        Approx(120 / duration_s).margin(0.006));

  // Per request: what was asked is what came back; the limit held and was reached.
  const json& requests = report["requests"];
  REQUIRE(requests.size() == 120);
  int64_t num_itls = 0;
  for (const json& record : requests) {
    CHECK(record["success"] == true);
    CHECK(record["output_len"] == record["max_tokens"]);
    CHECK(record["stream"] == (record["id"].get<int>() % 2 == 0));
    CHECK(record["ttft_s"].get<double>() > 0);
    if (record["stream"] == true) {
      CHECK(record["itl_s"].size() == record["output_len"].get<size_t>() - 1);
      num_itls += record["itl_s"].size();
    } else {
      CHECK(record["itl_s"].empty());
      CHECK(record["ttft_s"] == record["latency_s"]);
    }
  }
  CHECK(num_itls > 0);
  CHECK(max_overlap(requests) == 16);
  // vLLM's peak counts every request that overlaps a 1-second bucket, so not bounded by 16.
  CHECK(summary["peak_concurrent_requests"].get<double>() >= 16);
  // The server sleeps 3 ms before each token: no gap between tokens can be shorter (minus the
  // chunks that arrive together in one read, which have gap ~0 only if the client fell behind).
  CHECK(summary["itl"]["median_ms"].get<double>() >= 2.9);
  CHECK(summary["tpot"]["mean_ms"].get<double>() >= 2.9);

  // The per-second series adds up to the totals.
  double series_tokens = 0;
  int series_completed = 0;
  for (const json& sample : report["time_series"]) {
    series_tokens += sample["output_tokens"].get<double>();
    series_completed += sample["completed"].get<int>();
  }
  CHECK(series_tokens == summary["total_output_tokens"].get<double>());
  CHECK(series_completed == 120);
}

TEST_CASE("eep-bench: Poisson arrivals spread the requests over time", "[bench]") {
  FakeOpenAiServer server({"--token-delay-ms", "1"});
  const auto result = run_bench(server, {"--num-prompts", "40", "--random-input-len", "8",
                                         "--random-output-len", "4", "--request-rate", "40"});
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  const json report = json::parse(read_file(server.result_path()));
  CHECK(report["summary"]["completed"] == 40);
  CHECK(table_value(result.output, "Request rate configured \\(RPS\\):") == "40.00");
  // 39 exponential gaps of mean 25 ms: the last request starts well after the first.
  double last_start_s = 0;
  for (const json& record : report["requests"]) {
    last_start_s = std::max(last_start_s, record["start_s"].get<double>());
  }
  CHECK(last_start_s > 0.4);
  CHECK(last_start_s < 3.0);
}

TEST_CASE("eep-bench: server errors, broken streams and timeouts are failed requests", "[bench]") {
  // Request numbers (arrival order at the server): every 5th gets HTTP 500, every 7th stream is
  // cut, every 11th never answers. Concurrency 1 makes the numbering the request order.
  FakeOpenAiServer server(
      {"--token-delay-ms", "1", "--fail-every", "5", "--break-every", "7", "--stall-every", "11"});
  const auto result =
      run_bench(server, {"--num-prompts", "30", "--random-input-len", "8", "--random-output-len",
                         "6", "--max-concurrency", "1", "--timeout", "1"});
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  const json report = json::parse(read_file(server.result_path()));
  int num_http = 0;
  int num_cut = 0;
  int num_timeout = 0;
  for (const json& record : report["requests"]) {
    const int number = record["id"].get<int>() + 1;
    const std::string error = record["error"];
    if (number % 11 == 0) {
      CHECK(error.find("timed out") != std::string::npos);
      num_timeout += 1;
    } else if (number % 5 == 0) {
      CHECK(error == "HTTP 500: injected failure " + std::to_string(number));
      num_http += 1;
    } else if (number % 7 == 0) {
      CHECK(!error.empty());
      num_cut += 1;
    } else {
      CHECK(record["success"] == true);
    }
  }
  CHECK(num_timeout == 2);  // 11, 22
  CHECK(num_http == 6);     // 5 .. 30 except none of them is a multiple of 11
  CHECK(num_cut == 4);      // 7, 14, 21, 28
  const int num_failed = num_timeout + num_http + num_cut;
  CHECK(report["summary"]["failed"] == num_failed);
  CHECK(report["summary"]["completed"] == 30 - num_failed);
  CHECK(table_value(result.output, "Failed requests:") == std::to_string(num_failed));
  CHECK(table_value(result.output, "Successful requests:") == std::to_string(30 - num_failed));
  CHECK(result.output.find("Error 0: request 4: HTTP 500: injected failure 5") !=
        std::string::npos);
  CHECK(report["summary"]["total_output_tokens"] == server.stats(num_timeout)["completion_tokens"]);
}

TEST_CASE("eep-bench: no server is a clear error, not a crash", "[bench]") {
  FakeOpenAiServer server;  // only for its temp dir and a result path
  // Port 9 (discard) on loopback: nothing listens there in the test environment.
  auto result = run_command({bin("eep-bench"), "--base-url", "http://127.0.0.1:9", "--num-prompts",
                             "3", "--random-input-len", "4", "--random-output-len", "2"});
  CHECK(result.exit_code == 2);
  CHECK(result.output.find("/v1/models") != std::string::npos);
  CHECK(result.output.find("--model") == std::string::npos);  // not a missing-model complaint

  // With --model it runs, and every request fails with the connection's reason.
  result = run_command({bin("eep-bench"), "--base-url", "http://127.0.0.1:9", "--model", "m",
                        "--num-prompts", "3", "--random-input-len", "4", "--random-output-len", "2",
                        "--result-json", server.result_path()});
  INFO(result.output);
  CHECK(result.exit_code == 0);
  CHECK(table_value(result.output, "Failed requests:") == "3");
  CHECK(result.output.find("Connection refused") != std::string::npos);

  result = run_command({bin("eep-bench"), "--base-url", server.url(), "--request-rate", "soon"});
  CHECK(result.exit_code == 2);
  CHECK(result.output.find("--request-rate") != std::string::npos);
}

TEST_CASE("eep-bench: 512 concurrent streams from one client", "[bench]") {
  FakeOpenAiServer server({"--token-delay-ms", "50"});
  const auto result = run_bench(
      server, {"--num-prompts", "512", "--random-input-len", "16", "--random-output-len", "8"},
      120s);
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  const json report = json::parse(read_file(server.result_path()));
  CHECK(report["summary"]["completed"] == 512);
  CHECK(report["summary"]["total_output_tokens"] == 512 * 8);
  CHECK(server.stats()["num_ok"] == 512);
  // 8 tokens 50 ms apart take 400 ms; all 512 requests must have overlapped most of that.
  CHECK(max_overlap(report["requests"]) > 400);
  CHECK(report["summary"]["peak_concurrent_requests"].get<double>() > 400);
}
