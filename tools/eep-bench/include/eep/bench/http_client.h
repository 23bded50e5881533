// eep-bench's HTTP side, on Boost.Beast over Asio: one TCP connection per request (sent with
// "Connection: close", so the server closes and holds the TIME_WAIT, not the client), driven as
// C++20 coroutines so that hundreds of concurrent streams run on one thread. Every failure
// (refused connection, non-200 status, broken or stalled stream, timeout) becomes a failed
// RequestRecord, never an exception.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>  // before awaitable.hpp, which uses std::exchange without it (Boost 1.74)

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "eep/bench/stats.h"
#include "eep/bench/workload.h"
#include "eep/common/status.h"

namespace eep::bench {

using BenchClock = std::chrono::steady_clock;

// http://host[:port][/prefix]; https is not supported (loopback and cluster-internal only).
struct HttpEndpoint {
  std::string host;
  std::string port = "80";
  std::string path_prefix;  // "" or "/prefix" (no trailing slash)
};
Result<HttpEndpoint> parse_base_url(std::string_view url);

// The sampling part of every request body.
struct SamplingOptions {
  double temperature = 0;  // greedy, as vLLM's benchmark
  double top_p = 1;
  std::optional<uint64_t> seed;  // per request: seed + request_idx
  bool ignore_eos = true;
};

// The OpenAI endpoint a run loads.
enum class ApiEndpoint { kCompletions, kChatCompletions };
// "/v1/completions" or "/v1/chat/completions"; anything else is an error naming both.
Result<ApiEndpoint> parse_api_endpoint(std::string_view path);
const char* api_path(ApiEndpoint endpoint);

// The JSON body of one request. /v1/completions: the prompt as text when the request has text,
// else as a token-id list. /v1/chat/completions: the text as one user message (the request must
// have text).
std::string make_completion_body(const BenchRequest& request, const std::string& model,
                                 const SamplingOptions& sampling,
                                 ApiEndpoint endpoint = ApiEndpoint::kCompletions);

struct ServedModel {
  std::string name;
  int vocab_size = 0;     // 0 when /v1/models does not say
  int max_model_len = 0;  // 0 when /v1/models does not say
};

// GET {prefix}/v1/models, blocking; the first model listed.
Result<ServedModel> fetch_first_model(const HttpEndpoint& endpoint, const std::string& api_key,
                                      std::chrono::milliseconds timeout);

class CompletionClient {
 public:
  struct Options {
    HttpEndpoint endpoint;
    boost::asio::ip::tcp::resolver::results_type addresses;
    std::string api_key;
    std::string model;
    ApiEndpoint api = ApiEndpoint::kCompletions;
    SamplingOptions sampling;
    std::chrono::milliseconds timeout{600'000};  // whole request, connect to last byte
  };
  explicit CompletionClient(Options options) : options_(std::move(options)) {}

  // Sends one request and returns its record (times relative to `bench_start`). Never throws.
  boost::asio::awaitable<RequestRecord> complete(const BenchRequest& request,
                                                 BenchClock::time_point bench_start) const;

 private:
  Options options_;
};

}  // namespace eep::bench
