#include "eep/bench/http_client.h"

#include <limits>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "eep/bench/completion_stream.h"

namespace eep::bench {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using net::ip::tcp;
using nlohmann::json;

Result<HttpEndpoint> parse_base_url(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    return error(
        ErrorCode::kInvalidArgument,
        "--base-url must start with http:// (https is not supported): " + std::string(url));
  }
  url.remove_prefix(kScheme.size());
  HttpEndpoint endpoint;
  const size_t slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  if (slash != std::string_view::npos) {
    endpoint.path_prefix = std::string(url.substr(slash));
    while (!endpoint.path_prefix.empty() && endpoint.path_prefix.back() == '/') {
      endpoint.path_prefix.pop_back();
    }
  }
  const size_t colon = authority.rfind(':');
  if (colon != std::string_view::npos && authority.find(']', colon) == std::string_view::npos) {
    endpoint.port = std::string(authority.substr(colon + 1));
    authority = authority.substr(0, colon);
  }
  if (authority.size() >= 2 && authority.front() == '[' && authority.back() == ']') {
    authority = authority.substr(1, authority.size() - 2);  // [::1]
  }
  endpoint.host = std::string(authority);
  if (endpoint.host.empty() || endpoint.port.empty() ||
      endpoint.port.find_first_not_of("0123456789") != std::string::npos) {
    return error(ErrorCode::kInvalidArgument,
                 "--base-url needs a host and a numeric port, e.g. http://127.0.0.1:8000");
  }
  return endpoint;
}

Result<ApiEndpoint> parse_api_endpoint(std::string_view path) {
  for (ApiEndpoint endpoint : {ApiEndpoint::kCompletions, ApiEndpoint::kChatCompletions}) {
    if (path == api_path(endpoint)) return endpoint;
  }
  return error(ErrorCode::kInvalidArgument,
               "--endpoint must be /v1/completions or "
               "/v1/chat/completions, not '" +
                   std::string(path) + "'");
}

const char* api_path(ApiEndpoint endpoint) {
  return endpoint == ApiEndpoint::kChatCompletions ? "/v1/chat/completions" : "/v1/completions";
}

std::string make_completion_body(const BenchRequest& request, const std::string& model,
                                 const SamplingOptions& sampling, ApiEndpoint endpoint) {
  json body{{"model", model}};
  if (endpoint == ApiEndpoint::kChatCompletions) {
    body["messages"] = json::array({{{"role", "user"}, {"content", request.prompt_text}}});
  } else if (!request.prompt_text.empty()) {
    body["prompt"] = request.prompt_text;
  } else {
    body["prompt"] = request.prompt_ids;
  }
  body.update(json{{"max_tokens", request.max_tokens},
                   {"temperature", sampling.temperature},
                   {"top_p", sampling.top_p},
                   {"ignore_eos", sampling.ignore_eos},
                   {"stream", request.stream}});
  if (sampling.seed) body["seed"] = *sampling.seed + static_cast<uint64_t>(request.request_idx);
  if (request.stream) body["stream_options"] = {{"include_usage", true}};
  return body.dump();
}

namespace {

std::string host_header(const HttpEndpoint& endpoint) {
  const bool ipv6 = endpoint.host.find(':') != std::string::npos;
  return (ipv6 ? "[" + endpoint.host + "]" : endpoint.host) + ":" + endpoint.port;
}

template <typename Body>
void set_common_headers(http::request<Body>& request, const HttpEndpoint& endpoint,
                        const std::string& api_key) {
  request.set(http::field::host, host_header(endpoint));
  request.set(http::field::user_agent, "eep-bench");
  request.set(http::field::connection, "close");
  if (!api_key.empty()) request.set(http::field::authorization, "Bearer " + api_key);
}

std::string describe_transport_error(const beast::error_code& ec, std::string_view what,
                                     std::chrono::milliseconds timeout) {
  if (ec == beast::error::timeout) {
    return std::string(what) + ": timed out after " + std::to_string(timeout.count() / 1000.0) +
           " s (--timeout)";
  }
  return std::string(what) + ": " + ec.message();
}

double seconds_since(BenchClock::time_point start) {
  return std::chrono::duration<double>(BenchClock::now() - start).count();
}

}  // namespace

Result<ServedModel> fetch_first_model(const HttpEndpoint& endpoint, const std::string& api_key,
                                      std::chrono::milliseconds timeout) {
  net::io_context context;
  beast::tcp_stream stream(context);
  const std::string where =
      "GET http://" + host_header(endpoint) + endpoint.path_prefix + "/v1/models";
  beast::error_code ec;
  tcp::resolver resolver(context);
  const auto addresses = resolver.resolve(endpoint.host, endpoint.port, ec);
  if (ec) return error(ErrorCode::kUnavailable, where + ": cannot resolve host: " + ec.message());
  stream.expires_after(timeout);
  stream.connect(addresses, ec);
  if (ec)
    return error(ErrorCode::kUnavailable, where + ": " + ec.message() + " (is the server up?)");
  http::request<http::empty_body> request{http::verb::get, endpoint.path_prefix + "/v1/models", 11};
  set_common_headers(request, endpoint, api_key);
  http::write(stream, request, ec);
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  if (!ec) http::read(stream, buffer, response, ec);
  if (ec) return error(ErrorCode::kUnavailable, where + ": " + ec.message());
  if (response.result() != http::status::ok) {
    return error(ErrorCode::kUnavailable,
                 where + ": " + describe_http_error(response.result_int(), response.body()));
  }
  const json body = json::parse(response.body(), nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.contains("data") || !body["data"].is_array() ||
      body["data"].empty() || !body["data"][0].contains("id") ||
      !body["data"][0]["id"].is_string()) {
    return error(
        ErrorCode::kInvalidArgument,
        where + ": no model listed; pass --model NAME. Reply: " + response.body().substr(0, 200));
  }
  const json& first = body["data"][0];
  ServedModel model;
  model.name = first["id"].get<std::string>();
  if (first.contains("vocab_size") && first["vocab_size"].is_number_integer()) {
    model.vocab_size = first["vocab_size"].get<int>();
  }
  if (first.contains("max_model_len") && first["max_model_len"].is_number_integer()) {
    model.max_model_len = first["max_model_len"].get<int>();
  }
  return model;
}

net::awaitable<RequestRecord> CompletionClient::complete(const BenchRequest& bench_request,
                                                         BenchClock::time_point bench_start) const {
  RequestRecord record;
  record.request_idx = bench_request.request_idx;
  record.prompt_len = static_cast<int>(bench_request.prompt_ids.size());
  record.max_tokens = bench_request.max_tokens;
  record.stream = bench_request.stream;
  auto fail = [&](std::string message) {
    record.latency_s = seconds_since(bench_start) - record.start_s;
    record.success = false;
    record.error = std::move(message);
  };
  try {
    http::request<http::string_body> request{
        http::verb::post, options_.endpoint.path_prefix + api_path(options_.api), 11};
    set_common_headers(request, options_.endpoint, options_.api_key);
    request.set(http::field::content_type, "application/json");
    request.set(http::field::accept,
                bench_request.stream ? "text/event-stream" : "application/json");
    request.body() =
        make_completion_body(bench_request, options_.model, options_.sampling, options_.api);
    request.prepare_payload();

    record.start_s = seconds_since(bench_start);
    beast::tcp_stream stream(co_await net::this_coro::executor);
    // One deadline for the whole request: every operation below expires at the same time.
    stream.expires_at(BenchClock::now() + options_.timeout);
    beast::error_code ec;
    co_await stream.async_connect(options_.addresses, net::redirect_error(net::use_awaitable, ec));
    if (ec) {
      fail(describe_transport_error(ec, "connect to " + host_header(options_.endpoint),
                                    options_.timeout));
      co_return record;
    }
    co_await http::async_write(stream, request, net::redirect_error(net::use_awaitable, ec));
    if (ec) {
      fail(describe_transport_error(ec, "sending the request", options_.timeout));
      co_return record;
    }
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    // Not boost::none: Boost 1.74 compares a Content-Length against an empty optional as
    // "over the limit" and fails every non-streamed reply.
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    co_await http::async_read_header(stream, buffer, parser,
                                     net::redirect_error(net::use_awaitable, ec));
    if (ec) {
      fail(describe_transport_error(ec, "waiting for the reply header", options_.timeout));
      co_return record;
    }
    const int status = parser.get().result_int();
    if (status != 200 || !bench_request.stream) {
      co_await http::async_read(stream, buffer, parser,
                                net::redirect_error(net::use_awaitable, ec));
      if (ec) {
        fail(describe_transport_error(ec, "reading the reply (HTTP " + std::to_string(status) + ")",
                                      options_.timeout));
      } else if (status != 200) {
        fail(describe_http_error(status, parser.get().body()));
      } else {
        fill_from_reply(parser.get().body(), seconds_since(bench_start), record);
      }
      co_return record;
    }

    StreamAccumulator accumulator(record.start_s);
    SseParser events;
    std::string transport_error;
    bool keep_reading = true;
    while (keep_reading && !parser.is_done()) {
      co_await http::async_read_some(stream, buffer, parser,
                                     net::redirect_error(net::use_awaitable, ec));
      const double now_s = seconds_since(bench_start);
      std::string& body = parser.get().body();
      for (const std::string& data : events.feed(body)) {
        auto chunk = parse_completion_chunk(data);
        if (!chunk.is_ok()) {
          CompletionChunk bad;
          bad.error = chunk.status().message();
          accumulator.on_chunk(bad, now_s);
          keep_reading = false;
          break;
        }
        keep_reading = accumulator.on_chunk(*chunk, now_s) && !accumulator.done();
        if (!keep_reading) break;
      }
      body.clear();  // the parser appends to it; what was fed is consumed
      if (ec) {
        if (keep_reading)
          transport_error = describe_transport_error(ec, "stream", options_.timeout);
        break;
      }
    }
    accumulator.finish(seconds_since(bench_start), transport_error, record);
  } catch (const std::exception& e) {
    fail(std::string("client error: ") + e.what());
  }
  co_return record;
}

}  // namespace eep::bench
