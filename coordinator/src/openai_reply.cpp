#include "eep/coordinator/openai_reply.h"

namespace eep::coordinator {
namespace {

using nlohmann::ordered_json;

// Our strings are valid UTF-8 (decoded and sanitized); replace instead of throwing all the same.
std::string dump(const ordered_json& value) {
  return value.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

std::string data_event(const ordered_json& value) {
  return "data: " + dump(value) + "\n\n";
}

}  // namespace

ReplyBuilder::Choice::Choice(const ModelInfo& model, const ReplyOptions& options)
    : text_stream(model, options.skip_special_tokens), stop(options.stop) {}

ReplyBuilder::ReplyBuilder(uint64_t first_request_id, const ModelInfo& model,
                           int64_t created_unix_s, ReplyOptions options)
    : id_((options.kind == ApiKind::kChat ? "chatcmpl-" : "cmpl-") +
          std::to_string(first_request_id)),
      model_(model),
      created_(created_unix_s),
      options_(std::move(options)) {
  choices_.reserve(static_cast<size_t>(options_.n));
  for (int idx = 0; idx < options_.n; ++idx) choices_.emplace_back(model_, options_);
}

ordered_json ReplyBuilder::envelope(bool chunk) const {
  const char* object = options_.kind == ApiKind::kChat
                           ? (chunk ? "chat.completion.chunk" : "chat.completion")
                           : "text_completion";
  return {{"id", id_}, {"object", object}, {"created", created_}, {"model", model_.name}};
}

ordered_json ReplyBuilder::usage() const {
  int completion_tokens = 0;
  for (const Choice& choice : choices_) completion_tokens += choice.num_tokens;
  // As OpenAI and vLLM count n > 1: the prompt once, every choice's tokens.
  return {{"prompt_tokens", prompt_tokens_},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens_ + completion_tokens}};
}

ordered_json ReplyBuilder::top_entry(int32_t id, float logprob) const {
  std::string bytes = token_bytes(model_, id);
  std::string token = tokenizer_kind(model_) == TokenizerKind::kNone
                          ? "token_id:" + std::to_string(id)
                          : sanitize_utf8(bytes);
  ordered_json entry = {{"token", token}, {"logprob", logprob}};
  ordered_json byte_values = ordered_json::array();
  for (char c : bytes) byte_values.push_back(static_cast<unsigned char>(c));
  entry["bytes"] = std::move(byte_values);
  return entry;
}

ordered_json ReplyBuilder::logprobs_json(const Choice& choice) const {
  if (options_.logprobs < 0) return nullptr;
  if (options_.kind == ApiKind::kChat) {
    ordered_json content = ordered_json::array();
    for (const TokenLogprob& token : choice.logprobs) {
      ordered_json entry = top_entry(token.id, token.logprob);
      ordered_json top = ordered_json::array();
      for (const auto& [id, logprob] : token.top) top.push_back(top_entry(id, logprob));
      entry["top_logprobs"] = std::move(top);
      content.push_back(std::move(entry));
    }
    return {{"content", std::move(content)}};
  }
  // The legacy completions object: parallel lists, top_logprobs keyed by each token's text.
  ordered_json tokens = ordered_json::array();
  ordered_json token_logprobs = ordered_json::array();
  ordered_json top_logprobs = ordered_json::array();
  ordered_json text_offset = ordered_json::array();
  for (const TokenLogprob& token : choice.logprobs) {
    tokens.push_back(top_entry(token.id, token.logprob)["token"]);
    token_logprobs.push_back(token.logprob);
    ordered_json top = ordered_json::object();
    for (const auto& [id, logprob] : token.top) {
      std::string text = top_entry(id, logprob)["token"].get<std::string>();
      if (!top.contains(text)) top[text] = logprob;
    }
    top_logprobs.push_back(std::move(top));
    text_offset.push_back(token.text_offset);
  }
  return {{"tokens", std::move(tokens)},
          {"token_logprobs", std::move(token_logprobs)},
          {"top_logprobs", std::move(top_logprobs)},
          {"text_offset", std::move(text_offset)}};
}

std::string ReplyBuilder::chunk(int choice_idx, const Choice& choice,
                                const std::string* finish_reason) const {
  ordered_json entry = {{"index", choice_idx}};
  if (options_.kind == ApiKind::kChat) {
    entry["delta"] =
        choice.text.empty() ? ordered_json::object() : ordered_json{{"content", choice.text}};
  } else {
    entry["text"] = choice.text;
  }
  entry["logprobs"] = logprobs_json(choice);
  entry["finish_reason"] = finish_reason ? ordered_json(*finish_reason) : ordered_json(nullptr);
  if (options_.kind == ApiKind::kCompletion) entry["token_ids"] = choice.token_ids;
  ordered_json body = envelope(/*chunk=*/true);
  body["choices"] = ordered_json::array({std::move(entry)});
  if (options_.include_usage) body["usage"] = nullptr;  // OpenAI: null on all but the last
  return data_event(body);
}

std::string ReplyBuilder::stream_start() const {
  std::string out;
  for (int idx = 0; idx < options_.n; ++idx) {
    ordered_json entry = {{"index", idx}};
    if (options_.kind == ApiKind::kChat) {
      entry["delta"] = {{"role", "assistant"}, {"content", ""}};
    } else if (options_.echo) {
      entry["text"] = options_.echo_text;
    } else {
      continue;
    }
    entry["logprobs"] = nullptr;
    entry["finish_reason"] = nullptr;
    if (options_.kind == ApiKind::kCompletion) entry["token_ids"] = ordered_json::array();
    ordered_json body = envelope(/*chunk=*/true);
    body["choices"] = ordered_json::array({std::move(entry)});
    if (options_.include_usage) body["usage"] = nullptr;
    out += data_event(body);
  }
  return out;
}

std::string ReplyBuilder::finish_stream() const {
  std::string out;
  if (options_.include_usage) {
    ordered_json body = envelope(/*chunk=*/true);
    body["choices"] = ordered_json::array();
    body["usage"] = usage();
    out += data_event(body);
  }
  return out + "data: [DONE]\n\n";
}

bool ReplyBuilder::consume(Choice& choice, const CompletionEvent& event) {
  const size_t offset_base = options_.echo ? options_.echo_text.size() : 0;
  for (size_t idx = 0; idx < event.new_tokens.size(); ++idx) {
    const int32_t id = event.new_tokens[idx];
    const size_t token_offset = offset_base + choice.generated_bytes;
    std::string piece = choice.text_stream.push(id);
    choice.generated_bytes += piece.size();
    ++choice.num_tokens;
    choice.token_ids.push_back(id);
    if (options_.logprobs >= 0 && idx < event.logprobs.size()) {
      const protocol::TokenLogprobs& source = event.logprobs[idx];
      TokenLogprob token{id, source.logprob, token_offset, {}};
      for (size_t top_idx = 0;
           top_idx < source.top_ids.size() && top_idx < source.top_logprobs.size(); ++top_idx) {
        token.top.emplace_back(source.top_ids[top_idx], source.top_logprobs[top_idx]);
      }
      choice.logprobs.push_back(std::move(token));
    }
    StopStringMatcher::Output shown = choice.stop.push(piece);
    choice.text += shown.text;
    if (shown.stopped) return true;
  }
  if (!event.finished) return false;
  StopStringMatcher::Output rest = choice.stop.push(choice.text_stream.finish());
  choice.text += rest.text;
  if (rest.stopped) return true;
  choice.text += choice.stop.finish();
  return false;
}

ReplyBuilder::Update ReplyBuilder::on_event(int choice_idx, const CompletionEvent& event) {
  Update update;
  if (done() || choice_idx < 0 || choice_idx >= options_.n) return update;
  Choice& choice = choices_[static_cast<size_t>(choice_idx)];
  if (choice.finished) return update;
  prompt_tokens_ = std::max(prompt_tokens_, event.prompt_tokens);
  if (event.finished && !event.status.is_ok()) {
    failure_ = api_error_from_status(event.status);
    if (options_.stream) {
      update.events = "data: " + error_body(*failure_) + "\n\ndata: [DONE]\n\n";
    }
    return update;
  }
  const size_t num_before = choice.token_ids.size();
  const bool stopped = consume(choice, event);
  if (stopped) {
    choice.finished = true;
    choice.finish_reason = "stop";
    update.cancel = !event.finished;
  } else if (event.finished) {
    choice.finished = true;
    choice.finish_reason = event.finish_reason;
  }
  if (choice.finished) ++num_finished_;
  if (!options_.stream) return update;

  const bool brought_tokens = choice.token_ids.size() > num_before;
  const bool worth_a_chunk = options_.kind == ApiKind::kChat
                                 ? !choice.text.empty() || !choice.logprobs.empty()
                                 : brought_tokens;
  if (choice.finished) {
    update.events = chunk(choice_idx, choice, &choice.finish_reason);
  } else if (worth_a_chunk) {
    update.events = chunk(choice_idx, choice, nullptr);
  }
  choice.text.clear();
  choice.token_ids.clear();
  choice.logprobs.clear();
  if (done()) update.events += finish_stream();
  return update;
}

bool ReplyBuilder::done() const {
  return failure_.has_value() || num_finished_ == options_.n;
}

std::string ReplyBuilder::reply() const {
  ordered_json choices = ordered_json::array();
  for (size_t idx = 0; idx < choices_.size(); ++idx) {
    const Choice& choice = choices_[idx];
    ordered_json entry = {{"index", idx}};
    if (options_.kind == ApiKind::kChat) {
      entry["message"] = {{"role", "assistant"}, {"content", choice.text}};
    } else {
      entry["text"] = options_.echo ? options_.echo_text + choice.text : choice.text;
    }
    entry["logprobs"] = logprobs_json(choice);
    entry["finish_reason"] = choice.finish_reason;
    // Not OpenAI's: vLLM's return_token_ids, the generated ids.
    if (options_.kind == ApiKind::kCompletion) entry["token_ids"] = choice.token_ids;
    choices.push_back(std::move(entry));
  }
  ordered_json body = envelope(/*chunk=*/false);
  body["choices"] = std::move(choices);
  body["usage"] = usage();
  return dump(body);
}

}  // namespace eep::coordinator
