// The replies of /v1/completions and /v1/chat/completions (openai_reply.h) from core events:
// OpenAI's shapes streamed and not, stop strings across events (excluded, the request then
// cancelled), n choices with their indices and summed usage, log-probabilities, echo, the
// checkpoint's detokenizer (special tokens skipped or not).
#include <catch2/catch.hpp>

#include "chat_model_fixture.h"
#include "eep/coordinator/openai_reply.h"
#include "http_test_support.h"

using namespace eep;
using namespace eep::coordinator;
using namespace eep::coordinator::testing;
using nlohmann::json;

namespace {

CompletionEvent tokens_event(std::vector<int32_t> ids, bool finished = false,
                             std::string reason = "") {
  CompletionEvent event;
  event.new_tokens = std::move(ids);
  event.finished = finished;
  event.finish_reason = std::move(reason);
  event.prompt_tokens = 5;
  return event;
}

std::vector<int32_t> bytes_of(const std::string& text) {
  return std::vector<int32_t>(text.begin(), text.end());
}

const ModelInfo kByteModel{"byte-model", 512, 256, true, 1700000000, nullptr, nullptr};

}  // namespace

TEST_CASE("a stop string across events ends the choice without it and cancels the request",
          "[http][reply]") {
  ReplyOptions options;
  options.stop = {"END"};
  ReplyBuilder builder(3, kByteModel, 1700000001, options);
  CHECK_FALSE(builder.on_event(0, tokens_event(bytes_of("abc E"))).cancel);
  ReplyBuilder::Update update = builder.on_event(0, tokens_event(bytes_of("ND and more")));
  CHECK(update.cancel);
  REQUIRE(builder.done());
  // The core's "cancelled" event that follows changes nothing.
  builder.on_event(0, tokens_event({}, true, "cancelled"));
  json reply = json::parse(builder.reply());
  CHECK(reply["id"] == "cmpl-3");
  CHECK(reply["object"] == "text_completion");
  CHECK(reply["choices"][0]["text"] == "abc ");
  CHECK(reply["choices"][0]["finish_reason"] == "stop");
  // The tokens up to the one that completed the stop string ("D") count; the rest do not.
  CHECK(reply["choices"][0]["token_ids"].size() == 5 + 2);
  CHECK(reply["usage"]["completion_tokens"] == 7);
  CHECK(reply["usage"]["prompt_tokens"] == 5);

  // A stop string that only the last token completes, and text held back that one never does.
  ReplyOptions streamed = options;
  streamed.stream = true;
  ReplyBuilder stream(4, kByteModel, 0, streamed);
  SseEvents first = parse_sse(stream.on_event(0, tokens_event(bytes_of("xyz EN"))).events);
  REQUIRE(first.chunks.size() == 1);
  CHECK(first.chunks[0]["choices"][0]["text"] == "xyz ");
  SseEvents last =
      parse_sse(stream.on_event(0, tokens_event(bytes_of("!"), true, "length")).events);
  REQUIRE(last.chunks.size() == 1);
  CHECK(last.chunks[0]["choices"][0]["text"] == "EN!");
  CHECK(last.chunks[0]["choices"][0]["finish_reason"] == "length");
  CHECK(last.done);
}

TEST_CASE("n choices stream with their indices and sum their usage", "[http][reply]") {
  ReplyOptions options;
  options.n = 2;
  options.stream = true;
  options.include_usage = true;
  ReplyBuilder builder(10, kByteModel, 0, options);
  CHECK(builder.stream_start().empty());  // completions without echo: nothing before tokens
  std::string events = builder.on_event(1, tokens_event(bytes_of("b"))).events;
  events += builder.on_event(0, tokens_event(bytes_of("a"))).events;
  events += builder.on_event(0, tokens_event(bytes_of("aa"), true, "length")).events;
  CHECK_FALSE(builder.done());
  events += builder.on_event(1, tokens_event({}, true, "stop")).events;
  CHECK(builder.done());
  SseEvents sse = parse_sse(events);
  CHECK(sse.done);
  REQUIRE(sse.chunks.size() == 5);
  std::string text[2];
  for (size_t idx = 0; idx + 1 < sse.chunks.size(); ++idx) {
    const json& choice = sse.chunks[idx]["choices"][0];
    text[choice["index"].get<int>()] += choice["text"].get<std::string>();
    CHECK(sse.chunks[idx]["usage"].is_null());
  }
  CHECK(text[0] == "aaa");
  CHECK(text[1] == "b");
  const json& usage = sse.chunks.back()["usage"];
  CHECK(sse.chunks.back()["choices"].empty());
  CHECK(usage["prompt_tokens"] == 5);  // the prompt once
  CHECK(usage["completion_tokens"] == 4);
  CHECK(usage["total_tokens"] == 9);
}

TEST_CASE("chat replies: the role first, then content, special tokens skipped", "[http][reply]") {
  ModelInfo model = chat_model();
  auto hello = model.tokenizer->encode("hello", false);
  REQUIRE(hello.is_ok());
  std::vector<int32_t> ids = *hello;
  ids.push_back(kImEndId);

  ReplyOptions options;
  options.kind = ApiKind::kChat;
  options.stream = true;
  ReplyBuilder stream(7, model, 0, options);
  SseEvents start = parse_sse(stream.stream_start());
  REQUIRE(start.chunks.size() == 1);
  CHECK(start.chunks[0]["object"] == "chat.completion.chunk");
  CHECK(start.chunks[0]["id"] == "chatcmpl-7");
  CHECK(start.chunks[0]["choices"][0]["delta"] == json{{"role", "assistant"}, {"content", ""}});
  SseEvents rest = parse_sse(stream.on_event(0, tokens_event(ids, true, "stop")).events);
  REQUIRE(rest.chunks.size() == 1);
  CHECK(rest.chunks[0]["choices"][0]["delta"] == json{{"content", "hello"}});
  CHECK(rest.chunks[0]["choices"][0]["finish_reason"] == "stop");
  CHECK(rest.done);

  ReplyOptions whole = options;
  whole.stream = false;
  whole.skip_special_tokens = false;
  ReplyBuilder builder(8, model, 0, whole);
  builder.on_event(0, tokens_event(ids, true, "stop"));
  json reply = json::parse(builder.reply());
  CHECK(reply["object"] == "chat.completion");
  CHECK(reply["choices"][0]["message"] ==
        json{{"role", "assistant"}, {"content", "hello<|im_end|>"}});
  CHECK(reply["choices"][0]["logprobs"].is_null());
  CHECK(reply["usage"]["completion_tokens"] == ids.size());
}

TEST_CASE("log-probabilities in OpenAI's shapes", "[http][reply]") {
  CompletionEvent event = tokens_event(bytes_of("hi"), true, "length");
  event.logprobs = {{-0.5f, {'h', 'x'}, {-0.5f, -1.5f}}, {-0.25f, {'i', 'h'}, {-0.25f, -3.0f}}};

  ReplyOptions legacy;
  legacy.logprobs = 2;
  legacy.echo = true;
  legacy.echo_text = "say ";
  ReplyBuilder completion(1, kByteModel, 0, legacy);
  completion.on_event(0, event);
  json choice = json::parse(completion.reply())["choices"][0];
  CHECK(choice["text"] == "say hi");
  CHECK(choice["logprobs"]["tokens"] == json{"h", "i"});
  CHECK(choice["logprobs"]["token_logprobs"] == json{-0.5, -0.25});
  CHECK(choice["logprobs"]["top_logprobs"][0] == json{{"h", -0.5}, {"x", -1.5}});
  CHECK(choice["logprobs"]["top_logprobs"][1] == json{{"i", -0.25}, {"h", -3.0}});
  CHECK(choice["logprobs"]["text_offset"] == json{4, 5});  // after the echoed prompt

  ReplyOptions chat;
  chat.kind = ApiKind::kChat;
  chat.logprobs = 1;
  ReplyBuilder builder(2, kByteModel, 0, chat);
  builder.on_event(0, event);
  json content = json::parse(builder.reply())["choices"][0]["logprobs"]["content"];
  REQUIRE(content.size() == 2);
  CHECK(content[0]["token"] == "h");
  CHECK(content[0]["logprob"] == -0.5);
  CHECK(content[0]["bytes"] == json{104});
  CHECK(content[0]["top_logprobs"].size() == 2);
  CHECK(content[1]["top_logprobs"][1] == json{{"token", "h"}, {"logprob", -3.0}, {"bytes", {104}}});
}

TEST_CASE("a failed choice ends the whole reply with its error", "[http][reply]") {
  ReplyOptions options;
  options.n = 2;
  options.stream = true;
  ReplyBuilder builder(1, kByteModel, 0, options);
  builder.on_event(0, tokens_event(bytes_of("a")));
  CompletionEvent failed = tokens_event({}, true, "error");
  failed.status = error(ErrorCode::kUnavailable, "no worker");
  SseEvents sse = parse_sse(builder.on_event(1, failed).events);
  CHECK(builder.done());
  REQUIRE(builder.failure());
  CHECK(builder.failure()->http_status == 503);
  CHECK(sse.done);
  REQUIRE(sse.chunks.size() == 1);
  CHECK(sse.chunks[0]["error"]["message"] == "no worker");
}
