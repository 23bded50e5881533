// Test support for the HTTP API: a fake ServingFrontend with its own "core" thread, and a small
// blocking Beast client. Used by test_http_api.cpp and test_http_clients.cpp.
#pragma once

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "eep/coordinator/serving.h"

namespace eep::coordinator::testing {

// Generates the prompt's ids over and over (so a byte model echoes its prompt's text), one token
// per event every token_interval, on one thread of its own, as the coordinator's core would.
class FakeFrontend : public ServingFrontend {
 public:
  struct Options {
    ModelInfo model{"fake-model", 512, 256, true, 1700000000, nullptr, nullptr};
    std::chrono::milliseconds token_interval{2};
    std::optional<Status> refuse;          // submit() fails with this
    std::optional<Status> fail_with;       // the request ends in an error after its first token
    std::optional<size_t> accept_at_most;  // submit() says 429 beyond this many requests
    bool ready = true;
  };

  explicit FakeFrontend(Options options) : options_(std::move(options)) {
    core_ = std::thread([this] { run(); });
  }
  FakeFrontend() : FakeFrontend(Options{}) {}
  ~FakeFrontend() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    core_.join();
  }

  Result<uint64_t> submit(CompletionRequest request, CompletionCallback on_event) override {
    std::lock_guard lock(mutex_);
    if (options_.refuse) return *options_.refuse;
    if (options_.accept_at_most && submitted_.size() >= *options_.accept_at_most) {
      return error(ErrorCode::kResourceExhausted, "the fake frontend's queue is full");
    }
    uint64_t id = ++next_id_;
    request.id = id;
    submitted_.push_back(request);
    active_[id] = Active{std::move(request), std::move(on_event), 0, false};
    wake_.notify_all();
    return id;
  }

  void cancel(uint64_t request_id) override {
    std::lock_guard lock(mutex_);
    cancel_times_[request_id] = std::chrono::steady_clock::now();
    auto it = active_.find(request_id);
    if (it != active_.end()) it->second.cancelled = true;
    wake_.notify_all();
  }

  ModelInfo model_info() const override { return options_.model; }
  bool ready() const override { return options_.ready; }
  ServingStats stats() const override {
    std::lock_guard lock(mutex_);
    ServingStats stats = stats_;
    stats.requests_running = static_cast<int64_t>(active_.size());
    stats.fleet_size = 2;
    stats.generation = 7;
    return stats;
  }

  void set_ready(bool ready) { options_.ready = ready; }
  void set_refuse(std::optional<Status> refuse) {
    std::lock_guard lock(mutex_);
    options_.refuse = std::move(refuse);
  }

  size_t num_active() const {
    std::lock_guard lock(mutex_);
    return active_.size();
  }
  std::vector<CompletionRequest> submitted() const {
    std::lock_guard lock(mutex_);
    return submitted_;
  }
  std::optional<std::chrono::steady_clock::time_point> cancel_time(uint64_t request_id) const {
    std::lock_guard lock(mutex_);
    auto it = cancel_times_.find(request_id);
    if (it == cancel_times_.end()) return std::nullopt;
    return it->second;
  }
  size_t num_cancels() const {
    std::lock_guard lock(mutex_);
    return cancel_times_.size();
  }
  // Tokens sent so far for the request (0 when unknown).
  int num_emitted(uint64_t request_id) const {
    std::lock_guard lock(mutex_);
    auto it = active_.find(request_id);
    return it == active_.end() ? 0 : it->second.num_emitted;
  }

 private:
  struct Active {
    CompletionRequest request;
    CompletionCallback on_event;
    int num_emitted;
    bool cancelled;
  };

  void run() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      if (active_.empty()) {
        wake_.wait(lock, [this] { return stopping_ || !active_.empty(); });
        continue;
      }
      std::vector<std::pair<CompletionCallback, CompletionEvent>> events;
      for (auto it = active_.begin(); it != active_.end();) {
        Active& active = it->second;
        CompletionEvent event;
        event.request_id = it->first;
        event.prompt_tokens = static_cast<int>(active.request.prompt_ids.size());
        if (active.cancelled) {
          event.finished = true;
          event.finish_reason = "cancelled";
        } else if (options_.fail_with && active.num_emitted == 1) {
          event.finished = true;
          event.finish_reason = "error";
          event.status = *options_.fail_with;
          ++stats_.requests_failed;
        } else {
          const auto& prompt = active.request.prompt_ids;
          int32_t token = prompt[active.num_emitted % prompt.size()];
          event.new_tokens.push_back(token);
          ++active.num_emitted;
          ++stats_.generation_tokens;
          const auto& stops = active.request.stop_token_ids;
          if (std::find(stops.begin(), stops.end(), token) != stops.end()) {
            event.finished = true;
            event.finish_reason = "stop";
          } else if (active.num_emitted >= active.request.max_tokens) {
            event.finished = true;
            event.finish_reason = "length";
          }
        }
        event.completion_tokens = active.num_emitted;
        events.emplace_back(active.on_event, std::move(event));
        if (events.back().second.finished) {
          if (events.back().second.status.is_ok()) ++stats_.requests_finished;
          stats_.prompt_tokens += static_cast<int64_t>(active.request.prompt_ids.size());
          it = active_.erase(it);
        } else {
          ++it;
        }
      }
      lock.unlock();
      for (auto& [callback, event] : events) callback(event);
      std::this_thread::sleep_for(options_.token_interval);
      lock.lock();
    }
  }

  Options options_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  uint64_t next_id_ = 0;
  std::map<uint64_t, Active> active_;
  std::vector<CompletionRequest> submitted_;
  std::map<uint64_t, std::chrono::steady_clock::time_point> cancel_times_;
  ServingStats stats_;
  std::thread core_;
};

struct HttpReply {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  nlohmann::json json() const { return nlohmann::json::parse(body, nullptr, false); }
};

// One keep-alive connection to 127.0.0.1:port; each call sends a request and reads its reply.
class HttpClient {
 public:
  explicit HttpClient(int port) : socket_(io_) {
    namespace net = boost::asio;
    socket_.connect({net::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)});
  }

  HttpReply call(boost::beast::http::verb method, const std::string& target,
                 const std::string& body = "",
                 const std::map<std::string, std::string>& headers = {}) {
    namespace http = boost::beast::http;
    http::request<http::string_body> request{method, target, 11};
    request.set(http::field::host, "127.0.0.1");
    for (const auto& [name, value] : headers) request.set(name, value);
    if (!body.empty() || method == http::verb::post) {
      request.set(http::field::content_type, "application/json");
      request.body() = body;
      request.prepare_payload();
    }
    http::write(socket_, request);
    return read_reply();
  }

  HttpReply post(const std::string& target, const std::string& body,
                 const std::map<std::string, std::string>& headers = {}) {
    return call(boost::beast::http::verb::post, target, body, headers);
  }
  HttpReply get(const std::string& target, const std::map<std::string, std::string>& headers = {}) {
    return call(boost::beast::http::verb::get, target, "", headers);
  }

  // Sends raw bytes (for malformed HTTP) and reads one reply.
  HttpReply raw(const std::string& bytes) {
    boost::asio::write(socket_, boost::asio::buffer(bytes));
    return read_reply();
  }

  boost::asio::ip::tcp::socket& socket() { return socket_; }

  HttpReply read_reply() {
    namespace http = boost::beast::http;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 << 20);
    http::read(socket_, buffer_, parser);
    HttpReply reply;
    reply.status = parser.get().result_int();
    reply.body = parser.get().body();
    for (const auto& field : parser.get()) {
      std::string name(field.name_string().data(), field.name_string().size());
      std::transform(name.begin(), name.end(), name.begin(), ::tolower);
      reply.headers[name] = std::string(field.value().data(), field.value().size());
    }
    return reply;
  }

 private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::socket socket_;
  boost::beast::flat_buffer buffer_;
};

// The JSON objects of "data: {...}" events, and whether "data: [DONE]" ended them.
struct SseEvents {
  std::vector<nlohmann::json> chunks;
  bool done = false;
};

inline SseEvents parse_sse(const std::string& body) {
  SseEvents events;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) break;
    std::string event = body.substr(pos, end - pos);
    pos = end + 2;
    if (event.rfind("data: ", 0) != 0) continue;
    std::string data = event.substr(6);
    if (data == "[DONE]") {
      events.done = true;
    } else {
      events.chunks.push_back(nlohmann::json::parse(data, nullptr, false));
    }
  }
  return events;
}

// Polls cond every 5 ms until it holds or timeout passes.
template <typename Cond>
bool eventually(Cond cond, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return cond();
}

}  // namespace eep::coordinator::testing
