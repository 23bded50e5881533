// The client side of OpenAI's /v1/completions and /v1/chat/completions replies, without sockets:
// server-sent events cut into arbitrary pieces, the JSON of each chunk, and the accumulation of a
// RequestRecord's timing (TTFT, inter-token gaps, output length) from chunks and the times they
// arrived.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "eep/bench/stats.h"
#include "eep/common/status.h"

namespace eep::bench {

// Server-sent events (text/event-stream): lines ending in "\n" or "\r\n"; an empty line ends an
// event; the payload is its "data:" lines joined with "\n". Comments (":...") and other fields
// are ignored. Bytes may be cut anywhere between calls to feed().
class SseParser {
 public:
  // Appends bytes and returns the data of every event they completed, in order.
  std::vector<std::string> feed(std::string_view bytes);
  // Bytes of an event not yet ended by an empty line.
  bool has_partial_event() const { return !line_.empty() || !data_.empty(); }

 private:
  void take_line(std::string_view line, std::vector<std::string>& events);

  std::string line_;  // the current line so far
  std::string data_;  // data lines of the current event
  bool has_data_ = false;
};

// One parsed `data:` payload of a completions stream, or a whole non-streamed reply. Chat's
// choices[0].delta.content (streamed) and choices[0].message.content (not) are its text.
struct CompletionChunk {
  bool done = false;  // the "[DONE]" sentinel
  bool has_choice = false;
  bool role_only = false;  // chat's first chunk: delta.role with no content yet, not a token
  std::string text;
  std::vector<int32_t> token_ids;        // choices[0].token_ids, when the server sends them
  std::string finish_reason;             // empty while generating
  std::optional<int> prompt_tokens;      // usage.prompt_tokens
  std::optional<int> completion_tokens;  // usage.completion_tokens
  std::string error;                     // an {"error": {...}} body or chunk: its message

  // A chunk that carries generated output (and so a token time): text or ids, or a choice that
  // is not the final one (a token whose text the server holds back, e.g. half a UTF-8 character).
  bool has_output() const {
    if (role_only) return false;
    return !text.empty() || !token_ids.empty() || (has_choice && finish_reason.empty());
  }
};

// Parses a payload; a payload that is not JSON or not a completion is an error.
Result<CompletionChunk> parse_completion_chunk(std::string_view data);

// "HTTP 400: <message of the OpenAI error body>" (or the raw body when it is not one).
std::string describe_http_error(int status, std::string_view body);

// Builds the output part of a record as a streamed reply arrives. Times are seconds since the
// benchmark started. Usage: on_chunk for each parsed chunk, then finish() once.
class StreamAccumulator {
 public:
  explicit StreamAccumulator(double start_s) : start_s_(start_s) {}

  // Returns false once the stream reported an error (then stop reading).
  bool on_chunk(const CompletionChunk& chunk, double now_s);
  bool done() const { return done_; }

  // Fills output_len, ttft, itl, chunk_tokens, latency, success, error and finish_reason, and
  // prompt_len when the usage chunk counted the prompt.
  // `transport_error`: the connection failed or timed out before [DONE].
  void finish(double now_s, const std::string& transport_error, RequestRecord& record) const;

 private:
  double start_s_;
  std::optional<double> first_token_s_;
  double last_token_s_ = 0;
  std::vector<double> itl_s_;
  std::vector<int> chunk_tokens_;
  std::vector<int32_t> output_ids_;
  std::string output_text_;
  std::optional<int> completion_tokens_;
  std::optional<int> prompt_tokens_;
  std::string finish_reason_;
  std::string error_;
  bool done_ = false;
};

// The record fields for a non-streamed reply body that arrived at `now_s` (status 200).
void fill_from_reply(std::string_view body, double now_s, RequestRecord& record);

}  // namespace eep::bench
