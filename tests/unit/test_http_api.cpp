// The OpenAI-compatible HTTP API against a fake frontend: a real server on 127.0.0.1:0 and a
// Beast client (curl and the openai npm package are in test_http_clients.cpp).
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <thread>

#include "eep/coordinator/http_api.h"
#include "eep/coordinator/openai_api.h"
#include "http_test_support.h"

using namespace eep;
using namespace eep::coordinator;
using namespace eep::coordinator::testing;
using nlohmann::json;

namespace {

ApiError parse_error(const std::string& body, const ModelInfo& model) {
  auto parsed = parse_completion_request(body, model);
  REQUIRE(std::holds_alternative<ApiError>(parsed));
  return std::get<ApiError>(parsed);
}

ParsedCompletion parse_ok(const std::string& body, const ModelInfo& model) {
  auto parsed = parse_completion_request(body, model);
  if (auto* e = std::get_if<ApiError>(&parsed)) FAIL(e->message);
  return std::get<ParsedCompletion>(parsed);
}

const ModelInfo kModel{"fake-model", 512, 256, true, 1700000000, nullptr, nullptr};

// A good request after something bad: the server still serves.
void check_serves(int port) {
  HttpClient client(port);
  HttpReply reply = client.post("/v1/completions", R"({"prompt":"ok","max_tokens":2})");
  REQUIRE(reply.status == 200);
  CHECK(reply.json()["choices"][0]["text"] == "ok");
}

}  // namespace

TEST_CASE("completion requests are validated field by field", "[http]") {
  ParsedCompletion good = parse_ok(
      R"({"model":"fake-model","prompt":"hi","max_tokens":5,"temperature":0,"top_p":0.5,
          "seed":42,"ignore_eos":true,"stop_token_ids":[1,2],"stream":true,
          "stream_options":{"include_usage":true},"user":"someone","unknown_field":[1]})",
      kModel);
  CHECK(good.request.prompt_ids == std::vector<int32_t>{'h', 'i'});
  CHECK(good.request.max_tokens == 5);
  CHECK(good.request.temperature == 0.0f);
  CHECK(good.request.top_p == 0.5f);
  CHECK(good.request.seed == 42u);
  CHECK(good.request.ignore_eos);
  CHECK(good.request.stop_token_ids == std::vector<int32_t>{1, 2});
  CHECK(good.reply.stream);
  CHECK(good.reply.include_usage);

  ParsedCompletion defaults = parse_ok(R"({"prompt":[1,2,3],"temperature":null})", kModel);
  CHECK(defaults.request.max_tokens == 16);
  CHECK(defaults.request.temperature == 1.0f);
  CHECK_FALSE(defaults.request.seed.has_value());
  CHECK_FALSE(defaults.reply.stream);
  // The default max_tokens shrinks to what the context has left.
  CHECK(parse_ok(R"({"prompt":")" + std::string(250, 'x') + R"("})", kModel).request.max_tokens ==
        6);

  struct Bad {
    const char* body;
    int status;
    const char* param;
  };
  const std::string too_long = R"({"prompt":")" + std::string(256, 'x') + R"("})";
  for (const Bad& bad : std::vector<Bad>{
           {"{not json", 400, ""},
           {"[1,2]", 400, ""},
           {R"({"model":"other","prompt":"x"})", 404, "model"},
           {R"({"model":7,"prompt":"x"})", 400, "model"},
           {R"({"max_tokens":3})", 400, "prompt"},
           {R"({"prompt":""})", 400, "prompt"},
           {R"({"prompt":[]})", 400, "prompt"},
           {R"({"prompt":7})", 400, "prompt"},
           {R"({"prompt":["a","b"]})", 400, "prompt"},
           {R"({"prompt":[[1],[2]]})", 400, "prompt"},
           {R"({"prompt":[1,"a"]})", 400, "prompt"},
           {R"({"prompt":[1,2.5]})", 400, "prompt"},
           {R"({"prompt":[512]})", 400, "prompt"},
           {R"({"prompt":[-1]})", 400, "prompt"},
           {too_long.c_str(), 400, "prompt"},
           {R"({"prompt":"x","max_tokens":0})", 400, "max_tokens"},
           {R"({"prompt":"x","max_tokens":256})", 400, "max_tokens"},
           {R"({"prompt":"x","max_tokens":"5"})", 400, "max_tokens"},
           {R"({"prompt":"x","max_tokens":5.5})", 400, "max_tokens"},
           {R"({"prompt":"x","temperature":2.5})", 400, "temperature"},
           {R"({"prompt":"x","temperature":"hot"})", 400, "temperature"},
           {R"({"prompt":"x","top_p":0})", 400, "top_p"},
           {R"({"prompt":"x","top_p":1.5})", 400, "top_p"},
           {R"({"prompt":"x","seed":"s"})", 400, "seed"},
           {R"({"prompt":"x","stream":"yes"})", 400, "stream"},
           {R"({"prompt":"x","ignore_eos":1})", 400, "ignore_eos"},
           {R"({"prompt":"x","stop_token_ids":3})", 400, "stop_token_ids"},
           {R"({"prompt":"x","stop_token_ids":[9999]})", 400, "stop_token_ids"},
           {R"({"prompt":"x","stream_options":{"include_usage":"y"}})", 400,
            "stream_options.include_usage"},
           {R"({"prompt":"x","n":0})", 400, "n"},
           {R"({"prompt":"x","stop":[7]})", 400, "stop"},
           {R"({"prompt":"x","logprobs":30})", 400, "logprobs"},
           {R"({"prompt":"x","echo":1})", 400, "echo"},
           {R"({"prompt":"x","suffix":"s"})", 400, "suffix"},
       }) {
    INFO(bad.body);
    ApiError e = parse_error(bad.body, kModel);
    CHECK(e.http_status == bad.status);
    CHECK(e.param == bad.param);
    CHECK_FALSE(e.message.empty());
    json body = json::parse(error_body(e));
    CHECK(body["error"]["message"] == e.message);
    CHECK(body["error"].contains("type"));
    CHECK(body["error"].contains("code"));
  }

  ModelInfo ids_only = kModel;
  ids_only.byte_tokenizer = false;
  ApiError text_refused = parse_error(R"({"prompt":"hello"})", ids_only);
  CHECK(text_refused.http_status == 400);
  CHECK_THAT(text_refused.message, Catch::Contains("token ids"));
  CHECK(parse_ok(R"({"prompt":[1,2]})", ids_only).request.prompt_ids.size() == 2);

  // Deep nesting is refused as a value, not a stack overflow.
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  CHECK(parse_error(deep, kModel).http_status == 400);
}

TEST_CASE("a completion without a body is told so, not called bad JSON", "[http]") {
  auto parsed = parse_completion_request("", kModel);
  REQUIRE(std::holds_alternative<ApiError>(parsed));
  CHECK(std::get<ApiError>(parsed).http_status == 400);
  CHECK_THAT(std::get<ApiError>(parsed).message, Catch::Contains("no body"));
}

TEST_CASE("range boundaries of the API are inclusive where OpenAI's are", "[http]") {
  // A max_tokens that exactly fills the context: a prompt of 1 token and 255 new tokens make
  // the model's 256.
  CHECK(parse_ok(R"({"prompt":"x","max_tokens":255})", kModel).request.max_tokens == 255);
  CHECK(parse_ok(R"({"prompt":[5,6,7],"max_tokens":253})", kModel).request.max_tokens == 253);
  CHECK(parse_ok(R"({"prompt":"x","max_tokens":1})", kModel).request.max_tokens == 1);
  // A prompt of max_model_len - 1 tokens leaves exactly one.
  const std::string longest = R"({"prompt":")" + std::string(255, 'x') + R"("})";
  CHECK(parse_ok(longest, kModel).request.max_tokens == 1);
  CHECK(parse_ok(R"({"prompt":"x","temperature":0})", kModel).request.temperature == 0.0f);
  CHECK(parse_ok(R"({"prompt":"x","temperature":2})", kModel).request.temperature == 2.0f);
  CHECK(parse_ok(R"({"prompt":"x","top_p":1})", kModel).request.top_p == 1.0f);
  CHECK(parse_ok(R"({"prompt":[511]})", kModel).request.prompt_ids == std::vector<int32_t>{511});
  CHECK(parse_ok(R"({"prompt":[0]})", kModel).request.prompt_ids == std::vector<int32_t>{0});
}

TEST_CASE("health, models, metrics and a non-streaming completion", "[http]") {
  FakeFrontend frontend;
  HttpApi api("127.0.0.1:0", frontend, {});
  REQUIRE(api.start().is_ok());
  REQUIRE(api.port() > 0);
  HttpClient client(api.port());

  CHECK(client.get("/health").status == 200);
  frontend.set_ready(false);
  HttpReply unhealthy = client.get("/health");
  CHECK(unhealthy.status == 503);
  CHECK(unhealthy.json()["error"]["type"] == "service_unavailable");
  frontend.set_ready(true);

  HttpReply models = client.get("/v1/models");
  REQUIRE(models.status == 200);
  CHECK(models.json()["data"][0]["id"] == "fake-model");
  CHECK(models.json()["object"] == "list");

  HttpReply reply = client.post(
      "/v1/completions", R"({"model":"fake-model","prompt":"hello","max_tokens":7,"seed":3})");
  REQUIRE(reply.status == 200);
  CHECK(reply.headers["content-type"] == "application/json");
  json body = reply.json();
  CHECK(body["object"] == "text_completion");
  CHECK(body["model"] == "fake-model");
  CHECK(body["id"].get<std::string>().rfind("cmpl-", 0) == 0);
  CHECK(body["choices"][0]["text"] == "hellohe");
  CHECK(body["choices"][0]["finish_reason"] == "length");
  CHECK(body["choices"][0]["logprobs"].is_null());
  CHECK(body["choices"][0]["token_ids"].size() == 7);
  CHECK(body["usage"]["prompt_tokens"] == 5);
  CHECK(body["usage"]["completion_tokens"] == 7);
  CHECK(body["usage"]["total_tokens"] == 12);
  REQUIRE(frontend.submitted().size() == 1);
  CHECK(frontend.submitted()[0].seed == 3u);

  // "Connection: close" is honoured: the reply says so and the server closes the connection.
  {
    HttpClient closing(api.port());
    HttpReply closed = closing.post("/v1/completions", R"({"prompt":"abc","max_tokens":2})",
                                    {{"Connection", "close"}});
    CHECK(closed.status == 200);
    CHECK(closed.headers["connection"] == "close");
    char byte;
    boost::system::error_code ec;
    closing.socket().read_some(boost::asio::buffer(&byte, 1), ec);
    CHECK(ec == boost::asio::error::eof);
  }

  // Pipelined requests are answered in order.
  {
    HttpClient pipelined(api.port());
    std::string first = R"({"prompt":"one","max_tokens":3})";
    std::string second = R"({"prompt":"two","max_tokens":3})";
    auto request = [](const std::string& body) {
      return "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " +
             std::to_string(body.size()) + "\r\n\r\n" + body;
    };
    HttpReply reply_one =
        pipelined.raw(request(first) + request(second) + "GET /health HTTP/1.1\r\n\r\n");
    CHECK(reply_one.json()["choices"][0]["text"] == "one");
    CHECK(pipelined.read_reply().json()["choices"][0]["text"] == "two");
    CHECK(pipelined.read_reply().status == 200);
  }

  // A stop token ends it early.
  HttpReply stopped = client.post("/v1/completions", R"({"prompt":"abc","stop_token_ids":[98]})");
  CHECK(stopped.json()["choices"][0]["text"] == "ab");
  CHECK(stopped.json()["choices"][0]["finish_reason"] == "stop");

  HttpReply metrics = client.get("/metrics");
  REQUIRE(metrics.status == 200);
  CHECK_THAT(metrics.headers["content-type"], Catch::StartsWith("text/plain; version=0.0.4"));
  for (const char* line :
       {"eep_requests_finished_total 5", "eep_generation_tokens_total 17", "eep_fleet_size 2",
        "eep_generation 7", "eep_time_to_first_token_seconds_count 5",
        "eep_inter_token_latency_seconds_count 12", "eep_http_responses_total{code=\"200\"} 8",
        "eep_http_responses_total{code=\"503\"} 1"}) {
    CHECK_THAT(metrics.body, Catch::Contains(line));
  }
  api.stop();
}

TEST_CASE("a streamed completion arrives as server-sent events", "[http]") {
  FakeFrontend frontend;
  HttpApi api("127.0.0.1:0", frontend, {});
  REQUIRE(api.start().is_ok());
  HttpClient client(api.port());

  HttpReply reply = client.post(
      "/v1/completions",
      R"({"prompt":"héllo","max_tokens":6,"stream":true,"stream_options":{"include_usage":true}})");
  REQUIRE(reply.status == 200);
  CHECK(reply.headers["content-type"] == "text/event-stream");
  SseEvents events = parse_sse(reply.body);
  CHECK(events.done);
  REQUIRE(events.chunks.size() >= 3);
  std::string text;
  size_t num_ids = 0;
  for (size_t idx = 0; idx + 1 < events.chunks.size(); ++idx) {
    const json& chunk = events.chunks[idx];
    CHECK(chunk["object"] == "text_completion");
    CHECK(chunk["usage"].is_null());
    text += chunk["choices"][0]["text"].get<std::string>();
    num_ids += chunk["choices"][0]["token_ids"].size();
    bool last = idx + 2 == events.chunks.size();
    CHECK(chunk["choices"][0]["finish_reason"] == (last ? json("length") : json(nullptr)));
  }
  CHECK(text == "héllo");  // 6 bytes; the two-byte é arrives whole
  CHECK(num_ids == 6);
  const json& usage = events.chunks.back();
  CHECK(usage["choices"].empty());
  CHECK(usage["usage"]["completion_tokens"] == 6);
  CHECK(usage["usage"]["prompt_tokens"] == 6);

  // The same connection serves a non-streaming request next (keep-alive after chunked).
  CHECK(client.post("/v1/completions", R"({"prompt":"x","max_tokens":1})").status == 200);

  // A model without a byte tokenizer streams ids and empty text.
  FakeFrontend::Options options;
  options.model.byte_tokenizer = false;
  FakeFrontend ids_frontend(options);
  HttpApi ids_api("127.0.0.1:0", ids_frontend, {});
  REQUIRE(ids_api.start().is_ok());
  HttpClient ids_client(ids_api.port());
  SseEvents id_events =
      parse_sse(ids_client
                    .post("/v1/completions", R"({"prompt":[300,301],"max_tokens":3,
                                                       "stream":true})")
                    .body);
  std::vector<int> ids;
  for (const json& chunk : id_events.chunks) {
    CHECK(chunk["choices"][0]["text"] == "");
    for (int id : chunk["choices"][0]["token_ids"]) ids.push_back(id);
  }
  CHECK(ids == std::vector<int>{300, 301, 300});
}

TEST_CASE("bad requests get OpenAI errors and the server still serves", "[http]") {
  FakeFrontend frontend;
  HttpApiOptions options;
  options.max_body_bytes = 4096;
  HttpApi api("127.0.0.1:0", frontend, options);
  REQUIRE(api.start().is_ok());
  const int port = api.port();

  struct Case {
    std::string name;
    boost::beast::http::verb method;
    std::string target;
    std::string body;
    int status;
  };
  using boost::beast::http::verb;
  const std::vector<Case> cases = {
      {"malformed JSON", verb::post, "/v1/completions", "{\"prompt\":", 400},
      {"wrong type", verb::post, "/v1/completions", R"({"prompt":"x","max_tokens":"a"})", 400},
      {"unknown model", verb::post, "/v1/completions", R"({"model":"gpt-4","prompt":"x"})", 404},
      {"prompt too long", verb::post, "/v1/completions",
       json{{"prompt", std::vector<int>(300, 1)}}.dump(), 400},
      {"max_tokens out of range", verb::post, "/v1/completions",
       R"({"prompt":"x","max_tokens":100000})", 400},
      {"body too large", verb::post, "/v1/completions",
       R"({"prompt":")" + std::string(5000, 'x') + R"("})", 413},
      {"unknown path", verb::get, "/v2/nothing", "", 404},
      {"wrong method", verb::get, "/v1/completions", "", 405},
      {"wrong method on models", verb::post, "/v1/models", "{}", 405},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    HttpClient client(port);
    HttpReply reply = client.call(c.method, c.target, c.body);
    CHECK(reply.status == c.status);
    json body = reply.json();
    REQUIRE(body.is_object());
    CHECK(body["error"]["message"].is_string());
    CHECK(body["error"].contains("type"));
    CHECK(body["error"].contains("param"));
    CHECK(body["error"].contains("code"));
    if (c.status != 413) {
      // Same connection, next request.
      HttpReply next = client.post("/v1/completions", R"({"prompt":"ok","max_tokens":2})");
      CHECK(next.status == 200);
    } else {
      CHECK(reply.headers["connection"] == "close");
    }
    check_serves(port);
  }

  // Not HTTP at all, and a header over the limit: a 4xx, the connection closed, then service.
  {
    HttpClient client(port);
    CHECK(client.raw("HELLO WORLD\r\n\r\n").status == 400);
  }
  {
    HttpClient client(port);
    CHECK(client.get("/health", {{"X-Big", std::string(20000, 'a')}}).status == 431);
  }
  // A client that sends half a request and goes away.
  {
    HttpClient client(port);
    boost::asio::write(client.socket(), boost::asio::buffer(std::string("POST /v1/comp")));
  }
  check_serves(port);
  CHECK(frontend.num_active() == 0);
}

TEST_CASE("API key, capacity refusals and failed requests", "[http]") {
  FakeFrontend frontend;
  HttpApiOptions options;
  options.api_key = "sekrit";
  HttpApi api("127.0.0.1:0", frontend, options);
  REQUIRE(api.start().is_ok());
  HttpClient client(api.port());
  const std::string body = R"({"prompt":"hi","max_tokens":2})";

  HttpReply missing = client.post("/v1/completions", body);
  CHECK(missing.status == 401);
  CHECK(missing.json()["error"]["code"] == "invalid_api_key");
  CHECK(client.post("/v1/completions", body, {{"Authorization", "Bearer wrong"}}).status == 401);
  CHECK(client.get("/v1/models").status == 401);
  CHECK(client.get("/health").status == 200);  // open, like /metrics
  const std::map<std::string, std::string> auth = {{"Authorization", "Bearer sekrit"}};
  CHECK(client.post("/v1/completions", body, auth).status == 200);

  frontend.set_refuse(error(ErrorCode::kUnavailable, "no ACTIVE worker"));
  HttpReply unavailable = client.post("/v1/completions", body, auth);
  CHECK(unavailable.status == 503);
  CHECK(unavailable.json()["error"]["message"] == "no ACTIVE worker");
  frontend.set_refuse(error(ErrorCode::kResourceExhausted, "queue full"));
  CHECK(client.post("/v1/completions", body, auth).status == 429);
  frontend.set_refuse(std::nullopt);
  CHECK(client.post("/v1/completions", body, auth).status == 200);

  FakeFrontend::Options failing;
  failing.fail_with = error(ErrorCode::kUnavailable, "worker w1 died");
  FakeFrontend failing_frontend(failing);
  HttpApi failing_api("127.0.0.1:0", failing_frontend, {});
  REQUIRE(failing_api.start().is_ok());
  HttpClient failing_client(failing_api.port());
  HttpReply failed = failing_client.post("/v1/completions", body);
  CHECK(failed.status == 503);
  CHECK(failed.json()["error"]["message"] == "worker w1 died");
  SseEvents events = parse_sse(
      failing_client.post("/v1/completions", R"({"prompt":"hi","max_tokens":5,"stream":true})")
          .body);
  CHECK(events.done);
  REQUIRE_FALSE(events.chunks.empty());
  CHECK(events.chunks.back()["error"]["message"] == "worker w1 died");
}

TEST_CASE("at --max-connections the oldest idle connection makes room, else 503", "[http]") {
  FakeFrontend::Options slow;
  slow.token_interval = std::chrono::milliseconds(50);
  FakeFrontend frontend(slow);
  HttpApiOptions options;
  options.max_connections = 3;
  HttpApi api("127.0.0.1:0", frontend, options);
  REQUIRE(api.start().is_ok());
  // Three idle keep-alive connections, each used once (so the server has accepted them all),
  // idle[0] the longest.
  std::vector<std::unique_ptr<HttpClient>> idle;
  for (int i = 0; i < 3; ++i) {
    idle.push_back(std::make_unique<HttpClient>(api.port()));
    CHECK(idle.back()->get("/health").status == 200);
  }
  // A fourth is served: the connection idle the longest was closed for it.
  HttpClient fourth(api.port());
  CHECK(fourth.get("/health").status == 200);
  // The evicted connection reads end-of-stream (polled, so a bug shows as a failure, not a hang).
  idle[0]->socket().non_blocking(true);
  bool evicted = false;
  for (int attempt = 0; attempt < 200 && !evicted; ++attempt) {
    char byte = 0;
    boost::system::error_code ec;
    idle[0]->socket().read_some(boost::asio::buffer(&byte, 1), ec);
    evicted = ec && ec != boost::asio::error::would_block;
    if (!evicted) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(evicted);
  // Every connection busy (a long stream each): a new one gets 503 with Retry-After.
  std::vector<std::unique_ptr<HttpClient>> busy;
  std::vector<std::thread> streams;
  // One at a time: a connection is idle until its request arrives, and may be the one evicted.
  for (size_t i = 0; i < 3; ++i) {
    busy.push_back(std::make_unique<HttpClient>(api.port()));
    streams.emplace_back([client = busy[i].get()] {
      // A connection the server closed throws here; the checks below say what went wrong.
      try {
        client->post("/v1/completions", R"({"prompt":"x","max_tokens":100,"stream":true})");
      } catch (const std::exception&) {
      }
    });
    CHECK(eventually([&] { return frontend.num_active() == i + 1; }));
  }
  CHECK(frontend.num_active() == 3);  // the streams run
  HttpClient extra(api.port());
  HttpReply refused = extra.get("/health");
  CHECK(refused.status == 503);
  CHECK(refused.headers["retry-after"] == "1");
  CHECK(refused.json()["error"]["code"] == "too_many_connections");
  for (auto& stream : streams) stream.join();
}

TEST_CASE("a client that goes away gets its request cancelled", "[http]") {
  FakeFrontend::Options options;
  options.token_interval = std::chrono::milliseconds(20);
  FakeFrontend frontend(options);
  HttpApi api("127.0.0.1:0", frontend, {});
  REQUIRE(api.start().is_ok());

  for (bool stream : {false, true}) {
    INFO((stream ? "streaming" : "not streaming"));
    size_t num_before = frontend.submitted().size();
    {
      HttpClient client(api.port());
      std::string body = std::string(R"({"prompt":"x","max_tokens":200,"stream":)") +
                         (stream ? "true}" : "false}");
      boost::beast::http::request<boost::beast::http::string_body> request{
          boost::beast::http::verb::post, "/v1/completions", 11};
      request.body() = body;
      request.prepare_payload();
      boost::beast::http::write(client.socket(), request);
      REQUIRE(eventually([&] { return frontend.submitted().size() > num_before; }));
      uint64_t id = frontend.submitted().back().id;
      REQUIRE(eventually([&] { return frontend.num_emitted(id) >= 2; }));
      client.socket().close();  // goes away mid-request
      auto closed = std::chrono::steady_clock::now();
      REQUIRE(eventually([&] { return frontend.cancel_time(id).has_value(); },
                         std::chrono::seconds(1)));
      CHECK(*frontend.cancel_time(id) - closed < std::chrono::seconds(1));
    }
    REQUIRE(eventually([&] { return frontend.num_active() == 0; }));
  }
  check_serves(api.port());
}

TEST_CASE("64 concurrent streams, then stop() cancels what runs", "[http]") {
  FakeFrontend frontend;
  HttpApiOptions options;
  options.num_threads = 4;
  HttpApi api("127.0.0.1:0", frontend, options);
  REQUIRE(api.start().is_ok());

  constexpr int kNumClients = 64;
  std::atomic<int> num_ok{0};
  std::vector<std::thread> clients;
  for (int client_idx = 0; client_idx < kNumClients; ++client_idx) {
    clients.emplace_back([&, client_idx] {
      try {
        HttpClient client(api.port());
        std::string prompt = "req" + std::to_string(client_idx) + ";";
        for (int round = 0; round < 2; ++round) {
          HttpReply reply = client.post(
              "/v1/completions",
              json{{"prompt", prompt}, {"max_tokens", 20}, {"stream", round == 0}}.dump());
          std::string text;
          if (round == 0) {
            SseEvents events = parse_sse(reply.body);
            if (!events.done) return;
            for (const json& chunk : events.chunks) text += chunk["choices"][0]["text"];
          } else {
            text = reply.json()["choices"][0]["text"];
          }
          std::string expected;
          while (expected.size() < 20) expected += prompt;
          if (reply.status != 200 || text != expected.substr(0, 20)) return;
        }
        ++num_ok;
      } catch (const std::exception& e) {
        UNSCOPED_INFO("client " << client_idx << ": " << e.what());
      }
    });
  }
  for (auto& thread : clients) thread.join();
  CHECK(num_ok == kNumClients);

  // Requests in flight when the server stops are cancelled; stop() does not wait for them.
  std::vector<std::unique_ptr<HttpClient>> open;
  for (int idx = 0; idx < 4; ++idx) {
    open.push_back(std::make_unique<HttpClient>(api.port()));
    boost::beast::http::request<boost::beast::http::string_body> request{
        boost::beast::http::verb::post, "/v1/completions", 11};
    request.body() = R"({"prompt":"x","max_tokens":250,"stream":true})";
    request.prepare_payload();
    boost::beast::http::write(open.back()->socket(), request);
  }
  REQUIRE(eventually([&] { return frontend.num_active() == 4; }));
  size_t num_cancels = frontend.num_cancels();
  api.stop();
  CHECK(frontend.num_cancels() == num_cancels + 4);
  api.stop();  // idempotent
}

TEST_CASE("bad addresses are refused", "[http]") {
  FakeFrontend frontend;
  for (const char* bad : {"", "127.0.0.1", "127.0.0.1:x", "127.0.0.1:70000", "nohost:80", ":80"}) {
    INFO(bad);
    HttpApi api(bad, frontend, {});
    CHECK_FALSE(api.start().is_ok());
  }
  HttpApi first("127.0.0.1:0", frontend, {});
  REQUIRE(first.start().is_ok());
  HttpApi second("127.0.0.1:" + std::to_string(first.port()), frontend, {});
  Status taken = second.start();
  CHECK(taken.code() == ErrorCode::kIoError);
  // IPv6 loopback may be off in a container: asked of the kernel directly, then the API must
  // bind exactly when the kernel can (a clean kIoError otherwise).
  bool kernel_has_ipv6 = false;
  if (int fd = ::socket(AF_INET6, SOCK_STREAM, 0); fd >= 0) {
    sockaddr_in6 address{};
    address.sin6_family = AF_INET6;
    address.sin6_addr = in6addr_loopback;
    kernel_has_ipv6 = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
    ::close(fd);
  }
  HttpApi v6("[::1]:0", frontend, {});
  Status v6_status = v6.start();
  if (kernel_has_ipv6) {
    CHECK(v6_status.is_ok());
    CHECK(v6.port() > 0);
  } else {
    WARN("IPv6 loopback is off on this machine: only the clean refusal is checked");
    CHECK(v6_status.code() == ErrorCode::kIoError);
  }
}

TEST_CASE("events that arrive back to back keep their order", "[http]") {
  FakeFrontend::Options fast;
  fast.token_interval = std::chrono::milliseconds(0);
  fast.model.max_model_len = 10000000;  // a stream far larger than the socket buffers
  FakeFrontend frontend(fast);
  HttpApiOptions options;
  options.num_threads = 4;
  HttpApi api("127.0.0.1:0", frontend, options);
  REQUIRE(api.start().is_ok());
  HttpClient client(api.port());
  const std::string prompt = "0123456789abcdefghijklmnopqrstuvwxyz";
  for (bool stream : {false, true}) {
    HttpReply reply =
        client.post("/v1/completions",
                    json{{"prompt", prompt}, {"max_tokens", 216}, {"stream", stream}}.dump());
    std::string text;
    if (stream) {
      for (const json& chunk : parse_sse(reply.body).chunks) text += chunk["choices"][0]["text"];
    } else {
      text = reply.json()["choices"][0]["text"];
    }
    CHECK(text == prompt + prompt + prompt + prompt + prompt + prompt);
  }
}

TEST_CASE("a request that does not arrive in time gets 408 and an idle connection just closes",
          "[http]") {
  FakeFrontend frontend;
  HttpApiOptions options;
  options.request_timeout = std::chrono::milliseconds(300);
  HttpApi api("127.0.0.1:0", frontend, options);
  REQUIRE(api.start().is_ok());
  // Reads what the server sends until it closes the connection (bounded by a receive timeout).
  auto read_until_closed = [](HttpClient& client) {
    timeval limit{5, 0};
    ::setsockopt(client.socket().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
    std::string received;
    char chunk[4096];
    while (true) {
      const ssize_t n = ::recv(client.socket().native_handle(), chunk, sizeof(chunk), 0);
      if (n <= 0) break;
      received.append(chunk, static_cast<size_t>(n));
    }
    return received;
  };
  SECTION("a header cut short") {
    HttpClient client(api.port());
    boost::asio::write(client.socket(),
                       boost::asio::buffer(std::string("POST /v1/completions HTTP/1.1\r\nHo")));
    const auto sent = std::chrono::steady_clock::now();
    const std::string reply = read_until_closed(client);
    CHECK(std::chrono::steady_clock::now() - sent >= std::chrono::milliseconds(250));
    CHECK_THAT(reply, Catch::StartsWith("HTTP/1.1 408"));
    CHECK_THAT(reply, Catch::Contains("request_timeout"));
    CHECK_THAT(reply, Catch::Contains("300 ms"));
  }
  SECTION("a body cut short") {
    HttpClient client(api.port());
    boost::asio::write(client.socket(), boost::asio::buffer(std::string(
                                            "POST /v1/completions HTTP/1.1\r\n"
                                            "Host: x\r\nContent-Type: application/json\r\n"
                                            "Content-Length: 100\r\n\r\n{\"prompt\":")));
    const std::string reply = read_until_closed(client);
    CHECK_THAT(reply, Catch::StartsWith("HTTP/1.1 408"));
    CHECK(frontend.num_active() == 0);  // nothing was submitted
  }
  SECTION("an idle keep-alive connection") {
    HttpClient client(api.port());
    CHECK(client.get("/health").status == 200);
    const auto idle_since = std::chrono::steady_clock::now();
    CHECK(read_until_closed(client).empty());  // closed without a reply
    CHECK(std::chrono::steady_clock::now() - idle_since >= std::chrono::milliseconds(250));
  }
  check_serves(api.port());
}

TEST_CASE("a client that stops reading its stream is cut off after the write timeout", "[http]") {
  // 40000 tokens as fast as the fake makes them: about 8 MB of events, more than the socket
  // buffers of both ends hold, in few enough events that a sanitizer build keeps up.
  FakeFrontend::Options fast;
  fast.token_interval = std::chrono::milliseconds(0);
  fast.model.max_model_len = 100000;
  FakeFrontend frontend(fast);
  HttpApiOptions options;
  options.write_timeout = std::chrono::milliseconds(300);
  HttpApi api("127.0.0.1:0", frontend, options);
  REQUIRE(api.start().is_ok());
  HttpClient client(api.port());
  const std::string body = R"({"prompt":"x","max_tokens":40000,"stream":true})";
  const std::string request =
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
      "Content-Type: application/json\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  boost::asio::write(client.socket(), boost::asio::buffer(request));
  // The client never reads: once the buffers are full the server's write stalls, and 300 ms
  // later the server closes its socket with data still unsent. This end cannot see that without
  // reading (which would let the write go on, and the FIN waits behind the data), so the test
  // reads the server socket's state from /proc/net/tcp: ESTABLISHED (01) until it is closed.
  // (Without the option the default 30 s would pass the 25 s this waits; a sanitizer build
  // closes after about 9 s, most of it making and queueing the events.)
  const int server_port = api.port();
  const int client_port = client.socket().local_endpoint().port();
  auto server_socket_state = [&]() -> std::string {
    std::ifstream tcp("/proc/net/tcp");
    std::string line;
    char local[64], remote[64], state[8];
    while (std::getline(tcp, line)) {
      if (std::sscanf(line.c_str(), " %*s %63s %63s %7s", local, remote, state) != 3) continue;
      const std::string l(local), r(remote);
      auto port_of = [](const std::string& address) {
        return std::stoi(address.substr(address.find(':') + 1), nullptr, 16);
      };
      if (l.find(':') == std::string::npos || r.find(':') == std::string::npos) continue;
      if (port_of(l) == server_port && port_of(r) == client_port) return state;
    }
    return "gone";
  };
  REQUIRE(server_socket_state() == "01");
  const auto started = std::chrono::steady_clock::now();
  CHECK(eventually([&] { return server_socket_state() != "01"; }, std::chrono::seconds(25)));
  std::printf("write timeout of 300 ms: the server closed %.2f s after the request\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  CHECK(eventually([&] { return frontend.num_active() == 0; }, std::chrono::seconds(30)));
  check_serves(api.port());
}
