#include "eep/bench/completion_stream.h"

#include <nlohmann/json.hpp>

namespace eep::bench {

using nlohmann::json;

std::vector<std::string> SseParser::feed(std::string_view bytes) {
  std::vector<std::string> events;
  while (!bytes.empty()) {
    const size_t newline = bytes.find('\n');
    if (newline == std::string_view::npos) {
      line_.append(bytes);
      break;
    }
    line_.append(bytes.substr(0, newline));
    bytes.remove_prefix(newline + 1);
    std::string line = std::move(line_);
    line_.clear();
    if (!line.empty() && line.back() == '\r') line.pop_back();
    take_line(line, events);
  }
  return events;
}

void SseParser::take_line(std::string_view line, std::vector<std::string>& events) {
  if (line.empty()) {
    if (has_data_) events.push_back(std::move(data_));
    data_.clear();
    has_data_ = false;
    return;
  }
  if (line.front() == ':') return;  // comment (keep-alive)
  const size_t colon = line.find(':');
  const std::string_view field = line.substr(0, colon);
  if (field != "data") return;
  std::string_view value = colon == std::string_view::npos ? "" : line.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (has_data_) data_ += '\n';
  data_.append(value);
  has_data_ = true;
}

namespace {

std::string error_message(const json& body) {
  const json& error = body["error"];
  if (error.is_object() && error.contains("message") && error["message"].is_string()) {
    return error["message"].get<std::string>();
  }
  if (error.is_string()) return error.get<std::string>();
  return error.dump();
}

}  // namespace

Result<CompletionChunk> parse_completion_chunk(std::string_view data) {
  CompletionChunk chunk;
  if (data == "[DONE]") {
    chunk.done = true;
    return chunk;
  }
  const json body = json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object()) {
    return error(ErrorCode::kInvalidArgument,
                 "reply is not a JSON object: " + std::string(data.substr(0, 200)));
  }
  if (body.contains("error")) {
    chunk.error = error_message(body);
    return chunk;
  }
  try {
    if (body.contains("choices") && body["choices"].is_array() && !body["choices"].empty()) {
      const json& choice = body["choices"][0];
      chunk.has_choice = true;
      if (choice.contains("text") && choice["text"].is_string()) {
        chunk.text = choice["text"].get<std::string>();
      }
      for (const char* key : {"delta", "message"}) {
        if (!choice.contains(key) || !choice[key].is_object()) continue;
        const json& message = choice[key];
        if (message.contains("content") && message["content"].is_string()) {
          chunk.text = message["content"].get<std::string>();
        }
        chunk.role_only = message.contains("role") && chunk.text.empty();
      }
      if (choice.contains("token_ids") && choice["token_ids"].is_array()) {
        chunk.token_ids = choice["token_ids"].get<std::vector<int32_t>>();
      }
      if (choice.contains("finish_reason") && choice["finish_reason"].is_string()) {
        chunk.finish_reason = choice["finish_reason"].get<std::string>();
      }
    }
    if (body.contains("usage") && body["usage"].is_object()) {
      const json& usage = body["usage"];
      if (usage.contains("prompt_tokens") && usage["prompt_tokens"].is_number_integer()) {
        chunk.prompt_tokens = usage["prompt_tokens"].get<int>();
      }
      if (usage.contains("completion_tokens") && usage["completion_tokens"].is_number_integer()) {
        chunk.completion_tokens = usage["completion_tokens"].get<int>();
      }
    }
  } catch (const json::exception& e) {
    return error(ErrorCode::kInvalidArgument, std::string("malformed completion chunk (") +
                                                  e.what() +
                                                  "): " + std::string(data.substr(0, 200)));
  }
  return chunk;
}

std::string describe_http_error(int status, std::string_view body) {
  std::string message(body.substr(0, 500));
  const json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_discarded() && parsed.is_object() && parsed.contains("error")) {
    message = error_message(parsed);
  }
  return "HTTP " + std::to_string(status) + ": " + message;
}

bool StreamAccumulator::on_chunk(const CompletionChunk& chunk, double now_s) {
  if (!error_.empty()) return false;
  if (!chunk.error.empty()) {
    error_ = "error in stream: " + chunk.error;
    return false;
  }
  if (chunk.done) {
    done_ = true;
    return true;
  }
  if (chunk.has_output()) {
    if (!first_token_s_) {
      first_token_s_ = now_s;
    } else {
      itl_s_.push_back(now_s - last_token_s_);
    }
    last_token_s_ = now_s;
    chunk_tokens_.push_back(chunk.token_ids.empty() ? 1 : static_cast<int>(chunk.token_ids.size()));
    output_ids_.insert(output_ids_.end(), chunk.token_ids.begin(), chunk.token_ids.end());
    output_text_ += chunk.text;
  }
  if (!chunk.finish_reason.empty()) finish_reason_ = chunk.finish_reason;
  if (chunk.completion_tokens) completion_tokens_ = chunk.completion_tokens;
  if (chunk.prompt_tokens) prompt_tokens_ = chunk.prompt_tokens;
  if (finish_reason_ == "error" || finish_reason_ == "cancelled") {
    error_ = "request finished with finish_reason \"" + finish_reason_ + "\"";
    return false;
  }
  return true;
}

void StreamAccumulator::finish(double now_s, const std::string& transport_error,
                               RequestRecord& record) const {
  record.latency_s = now_s - start_s_;
  // No token chunk (an empty reply): the first token time is the end.
  record.ttft_s = first_token_s_ ? *first_token_s_ - start_s_ : record.latency_s;
  record.itl_s = itl_s_;
  record.chunk_tokens = chunk_tokens_;
  record.output_ids = output_ids_;
  record.output_text = output_text_;
  record.finish_reason = finish_reason_;
  if (prompt_tokens_) record.prompt_len = *prompt_tokens_;
  if (completion_tokens_) {
    record.output_len = *completion_tokens_;
  } else if (!output_ids_.empty()) {
    record.output_len = static_cast<int>(output_ids_.size());
  } else {
    record.output_len = static_cast<int>(chunk_tokens_.size());
  }
  if (!error_.empty()) {
    record.error = error_;
  } else if (!transport_error.empty()) {
    record.error = transport_error;
  } else if (!done_) {
    record.error = "stream ended before data: [DONE]";
  }
  record.success = record.error.empty();
}

void fill_from_reply(std::string_view body, double now_s, RequestRecord& record) {
  record.latency_s = now_s - record.start_s;
  record.ttft_s = record.latency_s;
  auto chunk = parse_completion_chunk(body);
  if (!chunk.is_ok()) {
    record.error = chunk.status().message();
  } else if (!chunk->error.empty()) {
    record.error = chunk->error;
  } else if (!chunk->has_choice) {
    record.error = "reply has no choices: " + std::string(body.substr(0, 200));
  } else {
    record.output_text = chunk->text;
    record.output_ids = chunk->token_ids;
    record.finish_reason = chunk->finish_reason;
    if (chunk->prompt_tokens) record.prompt_len = *chunk->prompt_tokens;
    record.output_len = chunk->completion_tokens ? *chunk->completion_tokens
                                                 : static_cast<int>(chunk->token_ids.size());
    if (record.output_len > 0) record.chunk_tokens = {record.output_len};
  }
  record.success = record.error.empty();
}

}  // namespace eep::bench
