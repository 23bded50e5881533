// eep-bench without a server: the statistics and table of `vllm bench serve`, server-sent event
// parsing on arbitrary cuts, the accumulation of a streamed reply, the workload and the flags.
#include <cmath>
#include <set>

#include <catch2/catch.hpp>

#include "chat_model_fixture.h"
#include "eep/bench/completion_stream.h"
#include "eep/bench/http_client.h"
#include "eep/bench/runner.h"
#include "eep/bench/stats.h"
#include "eep/bench/text_dataset.h"
#include "eep/bench/workload.h"

using namespace eep::bench;

namespace {

RequestRecord streamed(int64_t idx, double start_s, double ttft_s, std::vector<double> itl_s,
                       int prompt_len) {
  RequestRecord record;
  record.request_idx = idx;
  record.prompt_len = prompt_len;
  record.stream = true;
  record.start_s = start_s;
  record.ttft_s = ttft_s;
  record.itl_s = std::move(itl_s);
  record.chunk_tokens.assign(record.itl_s.size() + 1, 1);
  record.output_len = static_cast<int>(record.chunk_tokens.size());
  double latency_s = ttft_s;
  for (double gap : record.itl_s) latency_s += gap;
  record.latency_s = latency_s;
  record.success = true;
  return record;
}

}  // namespace

TEST_CASE("percentile interpolates linearly between ranks, as numpy", "[bench]") {
  CHECK(percentile({}, 50) == 0);
  CHECK(percentile({7}, 99) == 7);
  CHECK(percentile({4, 1, 3, 2}, 50) == Approx(2.5));
  CHECK(percentile({1, 2, 3, 4}, 99) == Approx(3.97));  // np.percentile([1,2,3,4], 99)
  CHECK(percentile({1, 2, 3, 4}, 0) == 1);
  CHECK(percentile({1, 2, 3, 4}, 100) == 4);
  std::vector<double> hundred;
  for (int i = 1; i <= 100; ++i) hundred.push_back(i);
  CHECK(percentile(hundred, 99) == Approx(99.01));
}

TEST_CASE("summarize: TTFT, TPOT, ITL and throughput as vLLM defines them", "[bench]") {
  std::vector<RequestRecord> records;
  // 4 tokens: ttft 0.1 s, gaps 0.02, 0.04, 0.06 -> latency 0.22, TPOT (0.22-0.1)/3 = 0.04.
  records.push_back(streamed(0, 0.0, 0.1, {0.02, 0.04, 0.06}, 10));
  // 2 tokens: ttft 0.3, gap 0.1 -> latency 0.4, TPOT 0.1.
  records.push_back(streamed(1, 0.5, 0.3, {0.1}, 20));
  // 1 token: no TPOT (output_len - 1 = 0), no ITL.
  records.push_back(streamed(2, 1.2, 0.2, {}, 5));
  // Not streamed: counted in TTFT (= latency) but not in TPOT or ITL.
  RequestRecord whole;
  whole.request_idx = 3;
  whole.prompt_len = 7;
  whole.stream = false;
  whole.start_s = 0.1;
  whole.latency_s = whole.ttft_s = 0.5;
  whole.output_len = 6;
  whole.chunk_tokens = {6};
  whole.success = true;
  records.push_back(whole);
  // Failed: counted as failed only (its prompt is not input tokens).
  RequestRecord failed;
  failed.request_idx = 4;
  failed.prompt_len = 1000;
  failed.start_s = 0.2;
  failed.latency_s = 0.1;
  failed.error = "HTTP 500: boom";
  records.push_back(failed);

  const Summary summary = summarize(records, 2.0);
  CHECK(summary.num_completed == 4);
  CHECK(summary.num_failed == 1);
  CHECK(summary.total_input_tokens == 10 + 20 + 5 + 7);
  CHECK(summary.total_output_tokens == 4 + 2 + 1 + 6);
  CHECK(summary.request_throughput == Approx(2.0));
  CHECK(summary.output_throughput == Approx(6.5));
  CHECK(summary.total_token_throughput == Approx((42 + 13) / 2.0));
  // TTFT over successes: 0.1, 0.3, 0.2, 0.5.
  CHECK(summary.ttft.mean_ms == Approx(275));
  CHECK(summary.ttft.median_ms == Approx(250));
  CHECK(summary.ttft.p99_ms == Approx(494));  // np.percentile([.1,.2,.3,.5], 99) = 0.494
  // TPOT over streamed requests with more than one token: 0.04, 0.1.
  CHECK(summary.tpot.mean_ms == Approx(70));
  CHECK(summary.tpot.median_ms == Approx(70));
  // ITL pooled: 0.02, 0.04, 0.06, 0.1.
  CHECK(summary.itl.mean_ms == Approx(55));
  CHECK(summary.itl.median_ms == Approx(50));
  CHECK(summary.itl.p99_ms == Approx(98.8));
  // Buckets from the first successful start (0.0): tokens at 0.1, 0.12, 0.16, 0.22 (request 0),
  // 0.8, 0.9 (request 1), 1.4 (request 2), 0.6 (6 tokens of request 3) -> second 0 holds 12.
  CHECK(summary.peak_output_throughput == Approx(12));
  // Second 0 overlaps requests 0, 1 and 3; second 1 overlaps 2 only.
  CHECK(summary.peak_concurrent_requests == Approx(3));
}

TEST_CASE("summarize of no successful request is all zeros, not NaN", "[bench]") {
  RequestRecord failed;
  failed.error = "connection refused";
  const Summary summary = summarize({failed}, 0.5);
  CHECK(summary.num_failed == 1);
  CHECK(summary.ttft.mean_ms == 0);
  CHECK(summary.peak_concurrent_requests == 0);
  CHECK(summary.request_throughput == 0);
}

TEST_CASE("time_series buckets tokens, completions, failures and running requests", "[bench]") {
  std::vector<RequestRecord> records;
  records.push_back(streamed(0, 0.0, 0.5, {0.3, 0.4}, 1));  // tokens at 0.5, 0.8, 1.2; ends 1.2
  records.push_back(streamed(1, 1.5, 0.2, {0.1}, 1));       // tokens at 1.7, 1.8; ends 1.8
  RequestRecord failed;
  failed.start_s = 0.1;
  failed.latency_s = 2.5;  // ends 2.6
  failed.error = "timeout";
  records.push_back(failed);
  const auto series = time_series(records, 2.6);
  REQUIRE(series.size() == 3);
  CHECK(series[0].output_tokens == 2);
  CHECK(series[1].output_tokens == 3);
  CHECK(series[2].output_tokens == 0);
  CHECK(series[0].completed == 0);
  CHECK(series[1].completed == 2);
  CHECK(series[2].failed == 1);
  CHECK(series[0].running == 2);
  CHECK(series[1].running == 3);
  CHECK(series[2].running == 1);
}

TEST_CASE("format_table reproduces vllm bench serve's table character for character", "[bench]") {
  // The first table of the reference (elastic-ep-milestone2-pr.txt), trailing spaces included.
  Summary summary;
  summary.num_completed = 512;
  summary.duration_s = 15.85;
  summary.total_input_tokens = 130815;
  summary.total_output_tokens = 65478;
  summary.request_throughput = 32.30;
  summary.output_throughput = 4131.03;
  summary.peak_output_throughput = 17408;
  summary.peak_concurrent_requests = 512;
  summary.total_token_throughput = 12384.18;
  summary.ttft = {6870.52, 7559.63, 12107.77};
  summary.tpot = {69.94, 64.56, 109.25};
  summary.itl = {69.90, 29.54, 1443.20};
  const std::string expected =
      "============ Serving Benchmark Result ============\n"
      "Successful requests:                     512       \n"
      "Benchmark duration (s):                  15.85     \n"
      "Total input tokens:                      130815    \n"
      "Total generated tokens:                  65478     \n"
      "Request throughput (req/s):              32.30     \n"
      "Output token throughput (tok/s):         4131.03   \n"
      "Peak output token throughput (tok/s):    17408.00  \n"
      "Peak concurrent requests:                512.00    \n"
      "Total Token throughput (tok/s):          12384.18  \n"
      "---------------Time to First Token----------------\n"
      "Mean TTFT (ms):                          6870.52   \n"
      "Median TTFT (ms):                        7559.63   \n"
      "P99 TTFT (ms):                           12107.77  \n"
      "-----Time per Output Token (excl. 1st token)------\n"
      "Mean TPOT (ms):                          69.94     \n"
      "Median TPOT (ms):                        64.56     \n"
      "P99 TPOT (ms):                           109.25    \n"
      "---------------Inter-token Latency----------------\n"
      "Mean ITL (ms):                           69.90     \n"
      "Median ITL (ms):                         29.54     \n"
      "P99 ITL (ms):                            1443.20   \n"
      "==================================================\n";
  CHECK(format_table(summary, {}) == expected);

  summary.num_failed = 3;
  TableOptions options;
  options.max_concurrency = 64;
  options.request_rate = 8;
  const std::string with_extras = format_table(summary, options);
  CHECK(with_extras.find("Successful requests:                     512       \n"
                         "Failed requests:                         3         \n"
                         "Maximum request concurrency:             64        \n"
                         "Request rate configured (RPS):           8.00      \n"
                         "Benchmark duration (s):") != std::string::npos);
}

TEST_CASE("format_errors lists the first failures", "[bench]") {
  std::vector<RequestRecord> records(15);
  for (int idx = 0; idx < 15; ++idx) {
    records[idx].request_idx = idx;
    records[idx].success = idx % 5 == 0;
    records[idx].error = records[idx].success ? "" : "HTTP 500: no " + std::to_string(idx);
  }
  const std::string text = format_errors(records, 3);
  CHECK(text.find("Error 0: request 1: HTTP 500: no 1\n") != std::string::npos);
  CHECK(text.find("Error 2: request 3: HTTP 500: no 3\n") != std::string::npos);
  CHECK(text.find("request 4") == std::string::npos);
  CHECK(format_errors({records[0]}).empty());
}

TEST_CASE("SseParser yields the same events wherever the bytes are cut", "[bench]") {
  const std::string stream =
      ": keep-alive comment\n\n"
      "data: {\"a\":1}\n\n"
      "event: message\r\ndata: {\"b\":2}\r\n\r\n"
      "data: line one\ndata:line two\nid: 7\n\n"
      "data: [DONE]\n\n";
  const std::vector<std::string> expected = {"{\"a\":1}", "{\"b\":2}", "line one\nline two",
                                             "[DONE]"};
  for (size_t cut1 = 0; cut1 <= stream.size(); ++cut1) {
    for (size_t cut2 = cut1; cut2 <= stream.size(); cut2 += 7) {
      SseParser parser;
      std::vector<std::string> events;
      for (auto piece :
           {stream.substr(0, cut1), stream.substr(cut1, cut2 - cut1), stream.substr(cut2)}) {
        for (auto& event : parser.feed(piece)) events.push_back(event);
      }
      REQUIRE(events == expected);
      CHECK_FALSE(parser.has_partial_event());
    }
  }
  SseParser byte_by_byte;
  std::vector<std::string> events;
  for (char c : stream) {
    for (auto& event : byte_by_byte.feed(std::string(1, c))) events.push_back(event);
  }
  CHECK(events == expected);
  SseParser unfinished;
  CHECK(unfinished.feed("data: {\"x\":").empty());
  CHECK(unfinished.has_partial_event());
}

TEST_CASE("parse_completion_chunk reads text, ids, finish reason, usage and errors", "[bench]") {
  auto chunk = parse_completion_chunk(
      R"({"choices":[{"index":0,"text":" hi","token_ids":[5,6],"finish_reason":null}]})");
  REQUIRE(chunk.is_ok());
  CHECK(chunk->text == " hi");
  CHECK(chunk->token_ids == std::vector<int32_t>{5, 6});
  CHECK(chunk->finish_reason.empty());
  CHECK(chunk->has_output());

  chunk = parse_completion_chunk(
      R"({"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":9,"total_tokens":12}})");
  REQUIRE(chunk.is_ok());
  CHECK_FALSE(chunk->has_output());
  CHECK(chunk->completion_tokens == 9);
  CHECK(chunk->prompt_tokens == 3);

  chunk = parse_completion_chunk("[DONE]");
  REQUIRE(chunk.is_ok());
  CHECK(chunk->done);

  chunk = parse_completion_chunk(R"({"error":{"message":"worker lost","type":"x","code":500}})");
  REQUIRE(chunk.is_ok());
  CHECK(chunk->error == "worker lost");

  CHECK_FALSE(parse_completion_chunk("{not json").is_ok());
  CHECK_FALSE(parse_completion_chunk(R"({"choices":[{"token_ids":[1,"x"]}]})").is_ok());
  CHECK(describe_http_error(400, R"({"error":{"message":"prompt too long"}})") ==
        "HTTP 400: prompt too long");
  CHECK(describe_http_error(502, "Bad Gateway") == "HTTP 502: Bad Gateway");
}

TEST_CASE("StreamAccumulator: TTFT, gaps between token chunks, output length", "[bench]") {
  auto chunk = [](std::string json_text) { return *parse_completion_chunk(json_text); };
  SECTION("usage.completion_tokens is the output length; ids per chunk weight the series") {
    StreamAccumulator accumulator(/*start_s=*/1.0);
    CHECK(accumulator.on_chunk(chunk(R"({"choices":[{"text":"a","token_ids":[1]}]})"), 1.25));
    CHECK(accumulator.on_chunk(chunk(R"({"choices":[{"text":"bc","token_ids":[2,3]}]})"), 1.5));
    CHECK(accumulator.on_chunk(
        chunk(R"({"choices":[{"text":"d","token_ids":[4],"finish_reason":"length"}]})"), 1.75));
    CHECK(accumulator.on_chunk(chunk(R"({"choices":[],"usage":{"completion_tokens":4}})"), 1.8));
    CHECK(accumulator.on_chunk(chunk("[DONE]"), 1.8));
    CHECK(accumulator.done());
    RequestRecord record;
    record.start_s = 1.0;
    accumulator.finish(2.0, "", record);
    CHECK(record.success);
    CHECK(record.ttft_s == Approx(0.25));
    CHECK(record.latency_s == Approx(1.0));
    REQUIRE(record.itl_s.size() == 2);
    CHECK(record.itl_s[0] == Approx(0.25));
    CHECK(record.itl_s[1] == Approx(0.25));
    CHECK(record.chunk_tokens == std::vector<int>{1, 2, 1});
    CHECK(record.output_len == 4);
    CHECK(record.output_ids == std::vector<int32_t>{1, 2, 3, 4});
    CHECK(record.output_text == "abcd");
    CHECK(record.finish_reason == "length");
  }
  SECTION("without usage or ids, the output length is the number of token chunks") {
    StreamAccumulator accumulator(0.0);
    for (int idx = 0; idx < 3; ++idx) {
      accumulator.on_chunk(chunk(R"({"choices":[{"text":"x"}]})"), 0.1 * (idx + 1));
    }
    accumulator.on_chunk(chunk("[DONE]"), 0.4);
    RequestRecord record;
    accumulator.finish(0.4, "", record);
    CHECK(record.success);
    CHECK(record.output_len == 3);
    CHECK(record.itl_s.size() == 2);
  }
  SECTION("a stream cut before [DONE] fails, with the transport's reason if there is one") {
    StreamAccumulator accumulator(0.0);
    accumulator.on_chunk(chunk(R"({"choices":[{"text":"x"}]})"), 0.1);
    RequestRecord record;
    accumulator.finish(0.2, "", record);
    CHECK_FALSE(record.success);
    CHECK(record.error.find("[DONE]") != std::string::npos);
    RequestRecord timed_out;
    accumulator.finish(0.2, "stream: timed out", timed_out);
    CHECK(timed_out.error == "stream: timed out");
  }
  SECTION("an error chunk or finish_reason error fails the request and stops reading") {
    StreamAccumulator accumulator(0.0);
    CHECK_FALSE(accumulator.on_chunk(chunk(R"({"error":{"message":"rank died"}})"), 0.1));
    RequestRecord record;
    accumulator.finish(0.2, "", record);
    CHECK_FALSE(record.success);
    CHECK(record.error == "error in stream: rank died");

    StreamAccumulator finished_badly(0.0);
    CHECK_FALSE(finished_badly.on_chunk(
        chunk(R"({"choices":[{"text":"","finish_reason":"error"}]})"), 0.1));
    RequestRecord bad;
    finished_badly.finish(0.1, "", bad);
    CHECK_FALSE(bad.success);
  }
}

TEST_CASE("fill_from_reply: a non-streamed reply is one chunk at the end", "[bench]") {
  RequestRecord record;
  record.start_s = 2.0;
  fill_from_reply(
      R"({"choices":[{"text":"xyz","token_ids":[7,8,9],"finish_reason":"length"}],
          "usage":{"prompt_tokens":4,"completion_tokens":3}})",
      2.5, record);
  CHECK(record.success);
  CHECK(record.ttft_s == Approx(0.5));
  CHECK(record.latency_s == Approx(0.5));
  CHECK(record.output_len == 3);
  CHECK(record.itl_s.empty());
  CHECK(record.chunk_tokens == std::vector<int>{3});

  RequestRecord empty;
  fill_from_reply(R"({"object":"text_completion"})", 1.0, empty);
  CHECK_FALSE(empty.success);
}

TEST_CASE("random dataset: deterministic, lengths in range, ids in the vocabulary", "[bench]") {
  RandomDatasetOptions options;
  options.num_prompts = 200;
  options.input_len = 100;
  options.output_len = 10;
  options.range_ratio = 0.5;
  options.vocab_size = 50;
  options.seed = 3;
  options.stream_mode = StreamMode::kMix;
  auto first = make_random_dataset(options);
  auto again = make_random_dataset(options);
  REQUIRE(first.is_ok());
  REQUIRE(again.is_ok());
  std::set<size_t> input_lens;
  for (size_t idx = 0; idx < first->size(); ++idx) {
    const BenchRequest& request = (*first)[idx];
    CHECK(request.prompt_ids == (*again)[idx].prompt_ids);
    CHECK(request.request_idx == static_cast<int64_t>(idx));
    CHECK(request.stream == (idx % 2 == 0));
    CHECK(request.prompt_ids.size() >= 50);
    CHECK(request.prompt_ids.size() <= 150);
    CHECK(request.max_tokens >= 5);
    CHECK(request.max_tokens <= 15);
    for (int32_t id : request.prompt_ids) REQUIRE((id >= 0 && id < 50));
    input_lens.insert(request.prompt_ids.size());
  }
  CHECK(input_lens.size() > 20);  // really drawn, not fixed
  options.seed = 4;
  CHECK(make_random_dataset(options)->front().prompt_ids != first->front().prompt_ids);

  options.range_ratio = 0;
  const auto fixed = make_random_dataset(options);
  REQUIRE(fixed.is_ok());
  for (const BenchRequest& request : *fixed) {
    CHECK(request.prompt_ids.size() == 100);
    CHECK(request.max_tokens == 10);
  }
  options.range_ratio = 1.0;
  CHECK_FALSE(make_random_dataset(options).is_ok());
}

TEST_CASE("arrival times: all at once for inf, Poisson with the given mean rate", "[bench]") {
  for (double time_s : arrival_times(5, INFINITY, 0)) CHECK(time_s == 0);
  const auto times = arrival_times(20000, 50.0, 1);
  CHECK(times.front() == 0);
  CHECK(std::is_sorted(times.begin(), times.end()));
  const double mean_gap = times.back() / (times.size() - 1);
  CHECK(mean_gap == Approx(1 / 50.0).epsilon(0.03));
  CHECK(arrival_times(20000, 50.0, 1) == times);
}

TEST_CASE("flags: base URL, request rate, request body", "[bench]") {
  auto endpoint = parse_base_url("http://127.0.0.1:8000");
  REQUIRE(endpoint.is_ok());
  CHECK(endpoint->host == "127.0.0.1");
  CHECK(endpoint->port == "8000");
  CHECK(endpoint->path_prefix.empty());
  endpoint = parse_base_url("http://[::1]:9/api/");
  REQUIRE(endpoint.is_ok());
  CHECK(endpoint->host == "::1");
  CHECK(endpoint->path_prefix == "/api");
  CHECK(parse_base_url("http://localhost")->port == "80");
  CHECK_FALSE(parse_base_url("https://x:1").is_ok());
  CHECK_FALSE(parse_base_url("http://:80").is_ok());
  CHECK_FALSE(parse_base_url("http://host:port").is_ok());

  CHECK(std::isinf(*parse_request_rate("inf")));
  CHECK(*parse_request_rate("2.5") == 2.5);
  CHECK_FALSE(parse_request_rate("0").is_ok());
  CHECK_FALSE(parse_request_rate("fast").is_ok());
  CHECK_FALSE(parse_request_rate("3x").is_ok());

  BenchRequest request;
  request.request_idx = 4;
  request.prompt_ids = {1, 2, 3};
  request.max_tokens = 8;
  request.stream = true;
  SamplingOptions sampling;
  sampling.seed = 100;
  const auto body = nlohmann::json::parse(make_completion_body(request, "tiny", sampling));
  CHECK(body["model"] == "tiny");
  CHECK(body["prompt"] == nlohmann::json::array({1, 2, 3}));
  CHECK(body["max_tokens"] == 8);
  CHECK(body["ignore_eos"] == true);
  CHECK(body["stream"] == true);
  CHECK(body["stream_options"]["include_usage"] == true);
  CHECK(body["seed"] == 104);
  CHECK(body["temperature"] == 0.0);
  request.stream = false;
  const auto plain = nlohmann::json::parse(make_completion_body(request, "tiny", {}));
  CHECK_FALSE(plain.contains("stream_options"));
  CHECK_FALSE(plain.contains("seed"));
}

TEST_CASE("text prompts: /v1/completions sends the text, /v1/chat/completions one user message",
          "[bench]") {
  CHECK(*parse_api_endpoint("/v1/completions") == ApiEndpoint::kCompletions);
  CHECK(*parse_api_endpoint("/v1/chat/completions") == ApiEndpoint::kChatCompletions);
  CHECK_THAT(parse_api_endpoint("/v1/chat").status().message(),
             Catch::Contains("/v1/completions or /v1/chat/completions"));

  BenchRequest request;
  request.prompt_ids = {104, 105};
  request.prompt_text = "hi";
  request.max_tokens = 4;
  const auto text = nlohmann::json::parse(make_completion_body(request, "m", {}));
  CHECK(text["prompt"] == "hi");
  const auto chat =
      nlohmann::json::parse(make_completion_body(request, "m", {}, ApiEndpoint::kChatCompletions));
  CHECK_FALSE(chat.contains("prompt"));
  CHECK(chat["messages"] == nlohmann::json::parse(R"([{"role":"user","content":"hi"}])"));
  CHECK(chat["max_tokens"] == 4);
  CHECK(chat["ignore_eos"] == true);
}

TEST_CASE("chat replies: the role chunk is no token, delta and message content are the text",
          "[bench]") {
  auto chunk = [](std::string json_text) { return *parse_completion_chunk(json_text); };
  const CompletionChunk role =
      chunk(R"({"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]})");
  CHECK(role.role_only);
  CHECK_FALSE(role.has_output());
  StreamAccumulator accumulator(0.0);
  accumulator.on_chunk(role, 0.5);
  accumulator.on_chunk(chunk(R"({"choices":[{"index":0,"delta":{"content":"he"}}]})"), 1.0);
  accumulator.on_chunk(chunk(R"({"choices":[{"index":0,"delta":{"content":"llo"}}]})"), 1.5);
  accumulator.on_chunk(chunk(R"({"choices":[{"index":0,"delta":{},"finish_reason":"length"}]})"),
                       1.5);
  accumulator.on_chunk(
      chunk(R"({"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":2}})"), 1.5);
  accumulator.on_chunk(chunk("[DONE]"), 1.5);
  RequestRecord record;
  record.prompt_len = 2;  // the dataset's text: the server counts the template's tokens too
  accumulator.finish(1.6, "", record);
  CHECK(record.success);
  CHECK(record.ttft_s == Approx(1.0));  // the first content, not the role chunk
  CHECK(record.output_text == "hello");
  CHECK(record.output_len == 2);
  CHECK(record.prompt_len == 12);

  RequestRecord whole;
  fill_from_reply(
      R"({"choices":[{"index":0,"message":{"role":"assistant","content":"hey"},)"
      R"("finish_reason":"length"}],"usage":{"prompt_tokens":9,"completion_tokens":3}})",
      2.0, whole);
  CHECK(whole.success);
  CHECK(whole.output_text == "hey");
  CHECK(whole.output_len == 3);
  CHECK(whole.prompt_len == 9);
}

TEST_CASE("the random text dataset: text from the vocabulary, no special tokens, reproducible",
          "[bench]") {
  auto tokenizer = eep::coordinator::text::HfTokenizer::from_json(
      eep::coordinator::testing::small_tokenizer_json().dump(), "tokenizer.json");
  REQUIRE(tokenizer.is_ok());
  RandomDatasetOptions options;
  options.num_prompts = 40;
  options.input_len = 24;
  options.output_len = 8;
  options.seed = 3;
  auto requests = make_random_text_dataset(options, *tokenizer);
  REQUIRE(requests.is_ok());
  auto again = make_random_text_dataset(options, *tokenizer);
  REQUIRE(again.is_ok());
  REQUIRE(requests->size() == 40);
  for (size_t idx = 0; idx < requests->size(); ++idx) {
    const BenchRequest& request = (*requests)[idx];
    INFO("request " << idx << ": " << request.prompt_text);
    CHECK(request.prompt_text == (*again)[idx].prompt_text);
    CHECK_FALSE(request.prompt_text.empty());
    CHECK(request.prompt_text.find("<|im_") == std::string::npos);
    CHECK(request.prompt_text.find("<|endoftext|>") == std::string::npos);
    // The ids are those of the text sent, no more than the prompt's length (nearly all of it).
    CHECK(*tokenizer->encode(request.prompt_text, false) == request.prompt_ids);
    CHECK(tokenizer->decode(request.prompt_ids) == request.prompt_text);
    CHECK(request.prompt_ids.size() <= 24);
    CHECK(request.prompt_ids.size() >= 18);
    for (int32_t id : request.prompt_ids) CHECK_FALSE(tokenizer->is_special(id));
    CHECK(request.max_tokens == 8);
  }
  options.seed = 4;
  CHECK(make_random_text_dataset(options, *tokenizer)->front().prompt_text !=
        requests->front().prompt_text);
}
