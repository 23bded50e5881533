// /v1/chat/completions and the new completion fields through a real server on 127.0.0.1:0 with
// a fake frontend (it generates the prompt's ids over again): n requests submitted with seeds
// seed, seed + 1, ...; a stop string cancels each request on the core; chat's stream shape.
#include <catch2/catch.hpp>

#include "chat_model_fixture.h"
#include "eep/coordinator/http_api.h"
#include "http_test_support.h"

using namespace eep;
using namespace eep::coordinator;
using namespace eep::coordinator::testing;
using nlohmann::json;

namespace {

FakeFrontend::Options chat_frontend_options() {
  FakeFrontend::Options options;
  options.model = chat_model();
  options.token_interval = std::chrono::milliseconds(1);
  return options;
}

}  // namespace

TEST_CASE("chat completions over HTTP: n choices, stop strings, streamed and not", "[http][chat]") {
  FakeFrontend frontend(chat_frontend_options());
  HttpApi api("127.0.0.1:0", frontend, {});
  REQUIRE(api.start().is_ok());
  HttpClient client(api.port());

  // The fake generates the rendered prompt: "<|im_start|>user\nhi STOP there<|im_end|>...".
  const std::string body =
      R"({"model":"chat-model","messages":[{"role":"user","content":"hi STOP there"}],
          "n":2,"seed":5,"stop":"STOP","max_tokens":40)";
  HttpReply reply = client.post("/v1/chat/completions", body + "}");
  REQUIRE(reply.status == 200);
  json whole = reply.json();
  CHECK(whole["object"] == "chat.completion");
  REQUIRE(whole["choices"].size() == 2);
  for (int idx = 0; idx < 2; ++idx) {
    const json& choice = whole["choices"][idx];
    CHECK(choice["index"] == idx);
    CHECK(choice["message"]["role"] == "assistant");
    CHECK(choice["message"]["content"] == "user\nhi ");  // special tokens skipped, STOP excluded
    CHECK(choice["finish_reason"] == "stop");
  }
  // Two requests on the core, seeds 5 and 6, both cancelled once the stop string came.
  std::vector<CompletionRequest> submitted = frontend.submitted();
  REQUIRE(submitted.size() == 2);
  CHECK(submitted[0].seed == 5u);
  CHECK(submitted[1].seed == 6u);
  CHECK(eventually([&] { return frontend.num_cancels() == 2; }));
  CHECK(eventually([&] { return frontend.num_active() == 0; }));
  const int prompt_tokens = static_cast<int>(submitted[0].prompt_ids.size());
  CHECK(whole["usage"]["prompt_tokens"] == prompt_tokens);
  // "<|im_start|>", "user", "\n", "hi", " ", "S", "T", "O", "P": the tokens up to the stop.
  CHECK(whole["usage"]["completion_tokens"].get<int>() >= 2 * 9);

  // Streamed: the role first, then content; chunks carry their choice's index.
  HttpReply streamed = client.post(
      "/v1/chat/completions", body + R"(,"stream":true,"stream_options":{"include_usage":true}})");
  REQUIRE(streamed.status == 200);
  SseEvents events = parse_sse(streamed.body);
  CHECK(events.done);
  std::string content[2];
  bool role_first[2] = {false, false};
  int num_finished = 0;
  for (const json& chunk : events.chunks) {
    if (chunk["choices"].empty()) continue;  // the usage chunk
    CHECK(chunk["object"] == "chat.completion.chunk");
    const json& choice = chunk["choices"][0];
    const int idx = choice["index"];
    if (choice["delta"].contains("role")) {
      CHECK(content[idx].empty());
      role_first[idx] = true;
    }
    if (choice["delta"].contains("content")) content[idx] += choice["delta"]["content"];
    if (!choice["finish_reason"].is_null()) {
      CHECK(choice["finish_reason"] == "stop");
      ++num_finished;
    }
  }
  CHECK(role_first[0]);
  CHECK(role_first[1]);
  CHECK(content[0] == "user\nhi ");
  CHECK(content[1] == "user\nhi ");
  CHECK(num_finished == 2);
  CHECK(events.chunks.back()["usage"]["prompt_tokens"] == prompt_tokens);

  // A template that raises, a model without one: 400s, and the server still serves.
  HttpReply raised =
      client.post("/v1/chat/completions", R"({"messages":[{"role":"developer","content":"x"}]})");
  CHECK(raised.status == 400);
  CHECK_THAT(raised.json()["error"]["message"].get<std::string>(),
             Catch::Contains("developer messages are not supported"));
  CHECK(client.post("/v1/completions", R"({"prompt":"ab","max_tokens":2})")
            .json()["choices"][0]["text"] == "ab");
}

TEST_CASE("a refused choice cancels the ones submitted before it", "[http][chat]") {
  FakeFrontend::Options options = chat_frontend_options();
  options.accept_at_most = 2;
  FakeFrontend frontend(options);
  HttpApi api("127.0.0.1:0", frontend, {});
  REQUIRE(api.start().is_ok());
  HttpClient client(api.port());
  HttpReply reply =
      client.post("/v1/completions", R"({"prompt":"abcdefgh","n":3,"max_tokens":200})");
  CHECK(reply.status == 429);
  CHECK(frontend.submitted().size() == 2);
  CHECK(frontend.num_cancels() == 2);
  CHECK(eventually([&] { return frontend.num_active() == 0; }));
}
