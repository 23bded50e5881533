// The checkpoint's text in the API (model_text.h, chat_api.h, openai_api.h): loading the
// tokenizer and chat template (a malformed one refused with its file and field), chat bodies
// rendered with the template and encoded, and the sampling and output fields of both endpoints,
// each validated with a 400 naming it.
#include <catch2/catch.hpp>

#include "chat_model_fixture.h"
#include "eep/coordinator/chat_api.h"
#include "eep/coordinator/openai_api.h"

using namespace eep;
using namespace eep::coordinator;
using namespace eep::coordinator::testing;
using nlohmann::json;

namespace {

ParsedCompletion chat_ok(const std::string& body, const ModelInfo& model = chat_model()) {
  auto parsed = parse_chat_request(body, model);
  if (auto* e = std::get_if<ApiError>(&parsed)) FAIL(e->param << ": " << e->message);
  return std::get<ParsedCompletion>(parsed);
}

ApiError chat_error(const std::string& body, const ModelInfo& model = chat_model()) {
  auto parsed = parse_chat_request(body, model);
  REQUIRE(std::holds_alternative<ApiError>(parsed));
  return std::get<ApiError>(parsed);
}

ParsedCompletion completion_ok(const std::string& body, const ModelInfo& model = chat_model()) {
  auto parsed = parse_completion_request(body, model);
  if (auto* e = std::get_if<ApiError>(&parsed)) FAIL(e->param << ": " << e->message);
  return std::get<ParsedCompletion>(parsed);
}

ApiError completion_error(const std::string& body, const ModelInfo& model = chat_model()) {
  auto parsed = parse_completion_request(body, model);
  REQUIRE(std::holds_alternative<ApiError>(parsed));
  return std::get<ApiError>(parsed);
}

std::vector<int32_t> encode(const std::string& text) {
  auto ids = chat_model().tokenizer->encode(text, /*add_special_tokens=*/false);
  REQUIRE(ids.is_ok());
  return *ids;
}

}  // namespace

TEST_CASE("the checkpoint's tokenizer and chat template load, or the start fails naming them",
          "[http][chat]") {
  ModelInfo model = chat_model();
  REQUIRE(model.tokenizer);
  REQUIRE(model.chat_template);
  CHECK(tokenizer_kind(model) == TokenizerKind::kHf);
  CHECK(model.tokenizer->eos_token_ids() == std::vector<int32_t>{kImEndId, kEndOfTextId});
  CHECK(json::parse(models_body(model))["data"][0]["tokenizer"] == "hf");

  // No tokenizer.json: today's behaviour (byte or ids), said in /v1/models.
  auto none = load_model_text(eep::testing::process_scratch_dir("eep_chat_model"));
  REQUIRE(none.is_ok());
  CHECK_FALSE(none->tokenizer);
  CHECK_FALSE(none->chat_template);
  ModelInfo bytes{"byte-model", 512, 256, true, 0, nullptr, nullptr};
  CHECK(json::parse(models_body(bytes))["data"][0]["tokenizer"] == "byte");
  bytes.byte_tokenizer = false;
  CHECK(json::parse(models_body(bytes))["data"][0]["tokenizer"] == "none");

  // A malformed tokenizer.json: an error naming the file, not a crash.
  std::filesystem::path broken = write_chat_model_dir("broken_tokenizer");
  write_file(broken / "tokenizer.json", R"({"model": {"type": "BPE", "vocab": [1, 2]}})");
  auto tokenizer_error = load_model_text(broken);
  REQUIRE_FALSE(tokenizer_error.is_ok());
  CHECK(tokenizer_error.status().code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(tokenizer_error.status().message(), Catch::Contains("tokenizer.json"));

  // A chat template that does not parse: the file, the field and the template's line.
  json config = {{"eos_token", "<|im_end|>"},
                 {"chat_template", "{% for m in messages %}\n{{ m.content }"}};
  auto template_error = load_model_text(write_chat_model_dir("broken_template", config));
  REQUIRE_FALSE(template_error.is_ok());
  CHECK(template_error.status().code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(template_error.status().message(),
             Catch::Contains("tokenizer_config.json: chat_template") && Catch::Contains("line"));

  // No chat template: completions only.
  auto no_template =
      load_model_text(write_chat_model_dir("no_template", json{{"eos_token", "<|im_end|>"}}));
  REQUIRE(no_template.is_ok());
  CHECK(no_template->tokenizer);
  CHECK_FALSE(no_template->chat_template);
}

TEST_CASE("chat messages are rendered with the checkpoint's template and encoded once",
          "[http][chat]") {
  ParsedCompletion parsed = chat_ok(R"({"model":"chat-model","messages":[
      {"role":"system","content":"Be brief."},
      {"role":"user","content":[{"type":"text","text":"hello"},{"type":"text","text":"world"}]}]})");
  const std::string prompt =
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhello\nworld<|im_end|>\n"
      "<|im_start|>assistant\n";
  CHECK(parsed.request.prompt_ids == encode(prompt));
  CHECK(parsed.request.prompt_ids.front() == kImStartId);  // special tokens as their ids
  CHECK(parsed.reply.kind == ApiKind::kChat);
  CHECK(parsed.reply.n == 1);
  // Chat's default max_tokens: what the context has left.
  CHECK(parsed.request.max_tokens == 256 - static_cast<int>(parsed.request.prompt_ids.size()));
  // generation_config.json's sampling, as the request gave none; its EOS ids as stop ids.
  CHECK(parsed.request.temperature == Approx(0.6f));
  CHECK(parsed.request.top_p == Approx(0.95f));
  CHECK(parsed.request.top_k == 20);
  CHECK(parsed.request.stop_token_ids == std::vector<int32_t>{kImEndId, kEndOfTextId});

  // add_generation_prompt false, chat_template_kwargs, tools reach the template.
  ParsedCompletion no_prompt =
      chat_ok(R"({"messages":[{"role":"user","content":"hi"}],"add_generation_prompt":false})");
  CHECK(no_prompt.request.prompt_ids == encode("<|im_start|>user\nhi<|im_end|>\n"));
  ParsedCompletion no_thinking = chat_ok(
      R"({"messages":[{"role":"user","content":"hi"}],
          "chat_template_kwargs":{"enable_thinking":false},
          "tools":[{"type":"function","function":{"name":"f","parameters":{}}}]})");
  CHECK(no_thinking.request.prompt_ids ==
        encode("<|im_start|>user\nhi<|im_end|>\n<tools>1</tools>\n<|im_start|>assistant\n"
               "<think>\n\n</think>\n\n"));
  // An assistant turn of tool calls only: content null.
  chat_ok(R"({"messages":[{"role":"user","content":"x"},
              {"role":"assistant","content":null,"tool_calls":[]},
              {"role":"tool","content":"42","tool_call_id":"c1"}]})");
  // max_completion_tokens is chat's max_tokens; the request's sampling beats the defaults.
  ParsedCompletion fields = chat_ok(
      R"({"messages":[{"role":"user","content":"x"}],"max_completion_tokens":7,"max_tokens":3,
          "temperature":0,"top_k":-1,"logprobs":true,"top_logprobs":3,"ignore_eos":true})");
  CHECK(fields.request.max_tokens == 7);
  CHECK(fields.request.temperature == 0.0f);
  CHECK(fields.request.top_k == 0);
  CHECK(fields.request.logprobs == 3);
  CHECK(fields.reply.logprobs == 3);
  CHECK(fields.request.stop_token_ids.empty());  // ignore_eos: no EOS ids
}

TEST_CASE("bad chat requests are 400s naming what is wrong", "[http][chat]") {
  struct Bad {
    const char* body;
    const char* param;
    const char* says;
  };
  for (
      const Bad& bad : std::vector<Bad>{
          {R"({})", "messages", "required"},
          {R"({"messages":"hi"})", "messages", "array"},
          {R"({"messages":[]})", "messages", "empty"},
          {R"({"messages":[7]})", "messages[0]", "object"},
          {R"({"messages":[{"content":"x"}]})", "messages[0].role", "string"},
          {R"({"messages":[{"role":"wizard","content":"x"}]})", "messages[0].role", "wizard"},
          {R"({"messages":[{"role":"user"}]})", "messages[0].content", "required"},
          {R"({"messages":[{"role":"user","content":7}]})", "messages[0].content", "string"},
          {R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]})",
           "messages[0].content[0]", "image_url"},
          {R"({"messages":[{"role":"user","content":[{"type":"text"}]}]})",
           "messages[0].content[0]", "text"},
          {R"({"messages":[{"role":"developer","content":"x"}]})", "messages",
           "developer messages are not supported"},
          {R"({"messages":[{"role":"user","content":"x"}],"tools":{}})", "tools", "array"},
          {R"({"messages":[{"role":"user","content":"x"}],"tool_choice":"required"})",
           "tool_choice", "forced"},
          {R"({"messages":[{"role":"user","content":"x"}],"chat_template_kwargs":[]})",
           "chat_template_kwargs", "object"},
          {R"({"messages":[{"role":"user","content":"x"}],"chat_template":"{{ 1 }}"})",
           "chat_template", "not supported"},
          {R"({"messages":[{"role":"user","content":"x"}],"logprobs":1})", "logprobs", "true"},
          {R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":2})", "top_logprobs",
           "logprobs"},
          {R"({"messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":21})",
           "top_logprobs", "[0, 20]"},
          {R"({"messages":[{"role":"user","content":"x"}],"max_completion_tokens":0})",
           "max_completion_tokens", "[1, "},
          {R"({"messages":[{"role":"user","content":"x"}],"echo":true})", "echo", "not supported"},
          {R"({"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}})",
           "response_format", "not supported"},
      }) {
    INFO(bad.body);
    ApiError e = chat_error(bad.body);
    CHECK(e.http_status == 400);
    CHECK(e.param == bad.param);
    CHECK_THAT(e.message, Catch::Contains(bad.says));
  }
  // The template's own message when it raises.
  CHECK(chat_error(R"({"messages":[{"role":"developer","content":"x"}]})").code ==
        "chat_template_error");
  // A conversation longer than the context.
  ApiError too_long =
      chat_error(R"({"messages":[{"role":"user","content":")" + std::string(300, 'x') + R"("}]})");
  CHECK(too_long.code == "context_length_exceeded");
  // A model without a template, or without a tokenizer at all.
  ModelInfo no_template = chat_model();
  no_template.chat_template = nullptr;
  ApiError refused = chat_error(R"({"messages":[{"role":"user","content":"x"}]})", no_template);
  CHECK(refused.code == "chat_template_unavailable");
  CHECK_THAT(refused.message, Catch::Contains("no chat template"));
  CHECK(chat_error(R"({"model":"other","messages":[]})").http_status == 404);
}

TEST_CASE("completion text prompts use the checkpoint's tokenizer", "[http][chat]") {
  ParsedCompletion parsed = completion_ok(R"({"prompt":"hello <|im_end|>","max_tokens":4})");
  CHECK(parsed.request.prompt_ids == encode("hello <|im_end|>"));
  CHECK(parsed.request.prompt_ids.back() == kImEndId);
  CHECK(parsed.request.max_tokens == 4);
  CHECK(parsed.request.stop_token_ids == std::vector<int32_t>{kImEndId, kEndOfTextId});
  // An explicit stop id first, the EOS ids after it, none twice.
  CHECK(completion_ok(R"({"prompt":"x","stop_token_ids":[260, 5]})").request.stop_token_ids ==
        std::vector<int32_t>{kImEndId, 5, kEndOfTextId});
  // A prompt of max_model_len tokens is a 400.
  ModelInfo small = chat_model(8);
  CHECK(completion_error(R"({"prompt":"hello world, and more"})", small).code ==
        "context_length_exceeded");
  // A tokenizer whose ids do not fit the model's vocabulary.
  ModelInfo narrow = chat_model();
  narrow.vocab_size = 259;
  CHECK(completion_error(R"({"prompt":"<|im_end|>"})", narrow).param == "prompt");
}

TEST_CASE("the sampling and output fields are read and range-checked", "[http][chat]") {
  ParsedCompletion all = completion_ok(
      R"({"prompt":"hi","n":3,"seed":10,"stop":["a","bc"],"logprobs":2,"top_k":5,"min_p":0.1,
          "presence_penalty":-2,"frequency_penalty":2,"repetition_penalty":1.3,
          "skip_special_tokens":false,"best_of":3,"stream":true,
          "stream_options":{"include_usage":true}})");
  CHECK(all.reply.n == 3);
  CHECK(all.reply.stop == std::vector<std::string>{"a", "bc"});
  CHECK(all.reply.logprobs == 2);
  CHECK(all.request.logprobs == 2);
  CHECK(all.request.top_k == 5);
  CHECK(all.request.min_p == Approx(0.1f));
  CHECK(all.request.presence_penalty == -2.0f);
  CHECK(all.request.frequency_penalty == 2.0f);
  CHECK(all.request.repetition_penalty == Approx(1.3f));
  CHECK_FALSE(all.reply.skip_special_tokens);
  CHECK(all.reply.stream);
  CHECK(all.reply.include_usage);
  // Choice i asks for seed + i.
  CHECK(request_for_choice(all, 0).seed == 10u);
  CHECK(request_for_choice(all, 2).seed == 12u);
  CHECK_FALSE(request_for_choice(completion_ok(R"({"prompt":"hi","n":2})"), 1).seed);
  CHECK(completion_ok(R"({"prompt":"hi","stop":"x"})").reply.stop == std::vector<std::string>{"x"});
  ParsedCompletion echo = completion_ok(R"({"prompt":"hi there","echo":true})");
  CHECK(echo.reply.echo);
  CHECK(echo.reply.echo_text == "hi there");
  // A prompt of ids echoes its decoded text.
  CHECK(completion_ok(R"({"prompt":[104, 105],"echo":true})").reply.echo_text == "hi");

  struct Bad {
    const char* body;
    const char* param;
  };
  for (const Bad& bad : std::vector<Bad>{
           {R"({"prompt":"x","n":0})", "n"},
           {R"({"prompt":"x","n":17})", "n"},
           {R"({"prompt":"x","n":"2"})", "n"},
           {R"({"prompt":"x","best_of":2})", "best_of"},
           {R"({"prompt":"x","stop":7})", "stop"},
           {R"({"prompt":"x","stop":["a",1]})", "stop"},
           {R"({"prompt":"x","stop":["a","b","c","d","e"]})", "stop"},
           {R"({"prompt":"x","logprobs":21})", "logprobs"},
           {R"({"prompt":"x","logprobs":-1})", "logprobs"},
           {R"({"prompt":"x","logprobs":true})", "logprobs"},
           {R"({"prompt":"x","echo":"yes"})", "echo"},
           {R"({"prompt":"x","echo":true,"logprobs":1})", "echo"},
           {R"({"prompt":"x","top_k":-2})", "top_k"},
           {R"({"prompt":"x","top_k":1.5})", "top_k"},
           {R"({"prompt":"x","min_p":1.5})", "min_p"},
           {R"({"prompt":"x","presence_penalty":2.5})", "presence_penalty"},
           {R"({"prompt":"x","frequency_penalty":-3})", "frequency_penalty"},
           {R"({"prompt":"x","frequency_penalty":"lots"})", "frequency_penalty"},
           {R"({"prompt":"x","repetition_penalty":0})", "repetition_penalty"},
           {R"({"prompt":"x","skip_special_tokens":0})", "skip_special_tokens"},
           {R"({"prompt":"x","suffix":"y"})", "suffix"},
           {R"({"prompt":"x","logit_bias":{"5":1}})", "logit_bias"},
       }) {
    INFO(bad.body);
    ApiError e = completion_error(bad.body);
    CHECK(e.http_status == 400);
    CHECK(e.param == bad.param);
    CHECK_THAT(e.message, Catch::Contains(bad.param));
  }
  // Stop strings need text: a model of ids only refuses them.
  ModelInfo ids_only{"ids", 512, 256, false, 0, nullptr, nullptr};
  CHECK(completion_error(R"({"prompt":[1],"stop":"x"})", ids_only).param == "stop");
}
