#include "http_session.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <deque>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "eep/common/log.h"
#include "eep/coordinator/chat_api.h"
#include "eep/coordinator/openai_api.h"
#include "eep/coordinator/openai_reply.h"

namespace eep::coordinator::http_server {
namespace {

// After a reply with "Connection: close" we read and drop what the client still sends (the rest
// of a refused body) for at most this long, so the reply is not lost to a TCP reset.
constexpr auto kLingerTimeout = std::chrono::seconds(1);
// While a request runs we read ahead to notice a disconnect; pipelined bytes beyond this stop
// the reading (the disconnect is then noticed on the next write).
constexpr size_t kMaxReadAheadBytes = 64 << 10;
constexpr size_t kReadAheadChunkBytes = 4096;

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string_view sv(beast::string_view text) {
  return {text.data(), text.size()};
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t idx = 0; idx < a.size(); ++idx) {
    diff |= static_cast<unsigned char>(a[idx] ^ (idx < b.size() ? b[idx] : 0));
  }
  return diff == 0;
}

}  // namespace

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(tcp::socket socket, ServerState& state)
      : socket_(std::move(socket)), deadline_(socket_.get_executor()), state_(state) {
    ++state_.num_connections;
  }

  // Destroyed normally after close(), or by stop() with the io_context: then a request still in
  // flight is cancelled here.
  ~HttpSession() {
    mark_busy();
    --state_.num_connections;
    for (uint64_t request_id : in_flight_) state_.frontend.cancel(request_id);
  }

  void start() { read_request(); }

  // Closes the connection from any thread (on its strand).
  void close_soon() {
    net::post(socket_.get_executor(), [self = shared_from_this()] { self->close(); });
  }

  // Takes it off the idle list (close_oldest_idle, under state.idle_mutex).
  void forget_idle_entry() { idle_it_.reset(); }

 private:
  // The generation guards against a timer that fired just before it was re-armed or cancelled.
  void arm_deadline(Clock::duration timeout) {
    deadline_.expires_after(timeout);
    uint64_t generation = ++deadline_generation_;
    deadline_.async_wait([self = shared_from_this(), generation](beast::error_code ec) {
      if (!ec && generation == self->deadline_generation_) self->on_deadline();
    });
  }

  // A request that started to arrive and did not finish in time gets 408 (once its read is
  // cancelled: on_read_error answers); an idle keep-alive connection, a write or a linger that
  // passed its time just close.
  void on_deadline() {
    const bool partial_request =
        reading_ && (buffer_.size() > 0 || (parser_ && parser_->is_header_done()));
    if (partial_request && !write_in_flight_) {
      EEP_LOG_DEBUG("http: request not received in time; 408");
      timed_out_ = true;
      beast::error_code ignored;
      socket_.cancel(ignored);
      return;
    }
    EEP_LOG_DEBUG("http: connection timed out");
    close();
  }

  void mark_idle() {
    std::lock_guard lock(state_.idle_mutex);
    if (!idle_it_) idle_it_ = state_.idle.insert(state_.idle.end(), weak_from_this());
  }
  void mark_busy() {
    std::lock_guard lock(state_.idle_mutex);
    if (idle_it_) state_.idle.erase(*idle_it_);
    idle_it_.reset();
  }

  void read_request() {
    mark_idle();
    parser_.emplace();
    parser_->body_limit(state_.options.max_body_bytes);
    parser_->header_limit(static_cast<uint32_t>(state_.options.max_header_bytes));
    reading_ = true;
    arm_deadline(state_.options.request_timeout);
    http::async_read_header(
        socket_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
  }

  void on_header(beast::error_code ec) {
    mark_busy();
    if (closed_) return;
    if (ec) return on_read_error(ec);
    const auto& request = parser_->get();
    auto read_body = [self = shared_from_this()] {
      http::async_read(self->socket_, self->buffer_, *self->parser_,
                       [self](beast::error_code ec, size_t) { self->on_body(ec); });
    };
    if (!parser_->is_done() && beast::iequals(request[http::field::expect], "100-continue")) {
      // curl asks before sending a large body; answer so it does not wait a second.
      static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      net::async_write(socket_, net::buffer(kContinue),
                       [self = shared_from_this(), read_body](beast::error_code ec, size_t) {
                         if (self->closed_) return;
                         if (ec) return self->close();
                         read_body();
                       });
      return;
    }
    read_body();
  }

  void on_body(beast::error_code ec) {
    if (closed_) return;
    reading_ = false;
    disarm_deadline();
    if (ec) return on_read_error(ec);
    handle(parser_->release());
  }

  void on_read_error(beast::error_code ec) {
    reading_ = false;
    if (timed_out_) {
      timed_out_ = false;
      return respond_error({408,
                            "the request did not arrive within " +
                                std::to_string(state_.options.request_timeout.count()) + " ms",
                            "invalid_request_error", "", "request_timeout"},
                           /*close=*/true);
    }
    if (ec == http::error::body_limit) {
      return respond_error({413,
                            "the request body exceeds the limit of " +
                                std::to_string(state_.options.max_body_bytes) + " bytes",
                            "invalid_request_error", "", "request_too_large"},
                           /*close=*/true);
    }
    if (ec == http::error::header_limit) {
      return respond_error({431,
                            "the request header exceeds the limit of " +
                                std::to_string(state_.options.max_header_bytes) + " bytes",
                            "invalid_request_error", "", "header_too_large"},
                           /*close=*/true);
    }
    if (ec.category() == beast::error_code(http::error::end_of_stream).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
      return respond_error({400, "malformed HTTP request: " + ec.message(), "invalid_request_error",
                            "", "bad_request"},
                           /*close=*/true);
    }
    close();  // the client went away, or the timer closed the socket
  }

  void handle(http::request<http::string_body> request) {
    received_ = Clock::now();
    keep_alive_ = request.keep_alive();
    chunked_ = request.version() >= 11;
    std::string_view target = sv(request.target());
    std::string_view path = target.substr(0, target.find('?'));
    const http::verb method = request.method();

    auto allow = [&](http::verb wanted) {
      if (method == wanted) return true;
      respond_error({405,
                     std::string(sv(http::to_string(method))) + " is not allowed on " +
                         std::string(path) + "; use " + std::string(sv(http::to_string(wanted))),
                     "invalid_request_error", "", "method_not_allowed"},
                    false, "Allow: " + std::string(sv(http::to_string(wanted))) + "\r\n");
      return false;
    };
    if (path == "/v1/completions" || path == "/v1/chat/completions") {
      if (allow(http::verb::post) && authorized(request)) {
        start_completion(request.body(),
                         path == "/v1/completions" ? ApiKind::kCompletion : ApiKind::kChat);
      }
    } else if (path == "/v1/models") {
      if (allow(http::verb::get) && authorized(request)) {
        respond(200, "application/json", models_body(state_.frontend.model_info()));
      }
    } else if (path == "/health") {
      if (!allow(http::verb::get)) return;
      if (state_.frontend.ready()) {
        respond(200, "application/json", R"({"status":"ok"})");
      } else {
        respond_error({503, "no worker is ready to serve requests yet", "service_unavailable", "",
                       "service_unavailable"});
      }
    } else if (path == "/metrics") {
      if (!allow(http::verb::get)) return;
      state_.metrics.update_from(state_.frontend.stats());
      respond(200, "text/plain; version=0.0.4; charset=utf-8", state_.registry.render());
    } else {
      respond_error({404,
                     "Invalid URL (" + std::string(sv(http::to_string(method))) + " " +
                         std::string(path) +
                         "); this server has POST /v1/completions, POST /v1/chat/completions, "
                         "GET /v1/models, GET /health and GET /metrics",
                     "invalid_request_error", "", "unknown_url"});
    }
  }

  bool authorized(const http::request<http::string_body>& request) {
    if (!state_.options.api_key) return true;
    std::string_view header = sv(request[http::field::authorization]);
    constexpr std::string_view kBearer = "Bearer ";
    if (header.size() > kBearer.size() &&
        beast::iequals(beast::string_view(header.data(), kBearer.size()), "Bearer ") &&
        constant_time_equal(header.substr(kBearer.size()), *state_.options.api_key)) {
      return true;
    }
    respond_error({401,
                   header.empty() ? "missing API key: send 'Authorization: Bearer <key>'"
                                  : "incorrect API key",
                   "invalid_request_error", "", "invalid_api_key"},
                  false, "WWW-Authenticate: Bearer\r\n");
    return false;
  }

  void start_completion(const std::string& body, ApiKind kind) {
    ModelInfo model = state_.frontend.model_info();
    auto parsed = kind == ApiKind::kChat ? parse_chat_request(body, model)
                                         : parse_completion_request(body, model);
    if (auto* failure = std::get_if<ApiError>(&parsed)) return respond_error(*failure);
    ParsedCompletion& completion = std::get<ParsedCompletion>(parsed);

    // n choices are n requests on the core; one refused refuses the whole reply.
    std::vector<uint64_t> request_ids;
    for (int choice_idx = 0; choice_idx < completion.reply.n; ++choice_idx) {
      auto submitted = state_.frontend.submit(request_for_choice(completion, choice_idx),
                                              event_callback(choice_idx));
      if (!submitted.is_ok()) {
        for (uint64_t request_id : request_ids) state_.frontend.cancel(request_id);
        return respond_error(api_error_from_status(submitted.status()));
      }
      request_ids.push_back(submitted.value());
    }
    request_ids_ = request_ids;
    in_flight_ = std::move(request_ids);
    streaming_ = completion.reply.stream;
    got_first_token_ = false;
    last_token_.assign(request_ids_.size(), Clock::time_point{});
    builder_.emplace(request_ids_.front(), model, unix_now(), std::move(completion.reply));
    EEP_LOG_DEBUG("http: request " << request_ids_.front() << " submitted (" << request_ids_.size()
                                   << " choices, " << (streaming_ ? "streaming" : "not streaming")
                                   << ")");
    if (streaming_) {
      if (!chunked_) keep_alive_ = false;  // HTTP/1.0: the body ends when the connection does
      state_.metrics.count_http_response(200);
      queued_ += std::string("HTTP/1.1 200 OK\r\n") +
                 "Content-Type: text/event-stream\r\nCache-Control: no-cache\r\n" +
                 (chunked_ ? "Transfer-Encoding: chunked\r\n" : "") + connection_header() + "\r\n";
      queue_chunk(builder_->stream_start());
      pump();
    }
    watch_for_disconnect();
  }

  // Runs on the core's thread: timestamp, queue, at most one post, return. Events stay in
  // order through the inbox; the hop onto the strand happens on an HTTP thread.
  CompletionCallback event_callback(int choice_idx) {
    return [gate = state_.gate, inbox = inbox_, weak = weak_from_this(),
            choice_idx](const CompletionEvent& event) {
      Clock::time_point arrived = Clock::now();
      std::lock_guard gate_lock(gate->mutex);
      if (!gate->open) return;
      {
        std::lock_guard inbox_lock(inbox->mutex);
        inbox->events.push_back({choice_idx, event, arrived});
        if (inbox->drain_scheduled) return;
        inbox->drain_scheduled = true;
      }
      net::post(*gate->executor, [weak] {
        if (auto self = weak.lock()) {
          net::post(self->socket_.get_executor(), [self] { self->drain_inbox(); });
        }
      });
    };
  }

  void drain_inbox() {
    std::deque<InboxEvent> events;
    {
      std::lock_guard lock(inbox_->mutex);
      events.swap(inbox_->events);
      inbox_->drain_scheduled = false;
    }
    for (const InboxEvent& event : events) on_event(event.choice_idx, event.event, event.arrived);
  }

  bool stop_tracking(uint64_t request_id) {
    auto it = std::find(in_flight_.begin(), in_flight_.end(), request_id);
    if (it == in_flight_.end()) return false;
    in_flight_.erase(it);
    return true;
  }

  void on_event(int choice_idx, const CompletionEvent& event, Clock::time_point arrived) {
    if (closed_ || !builder_ || choice_idx < 0 ||
        choice_idx >= static_cast<int>(request_ids_.size()) ||
        event.request_id != request_ids_[static_cast<size_t>(choice_idx)] ||
        std::find(in_flight_.begin(), in_flight_.end(), event.request_id) == in_flight_.end()) {
      return;  // a request that ended already (stop string, failure) or another exchange's
    }
    if (event.finished) stop_tracking(event.request_id);
    observe_latencies(choice_idx, event, arrived);
    ReplyBuilder::Update update = builder_->on_event(choice_idx, event);
    if (update.cancel && stop_tracking(event.request_id)) {
      // A stop string ended the choice: the worker stops generating it (its "cancelled" event
      // is ignored, the choice has finished with "stop").
      state_.frontend.cancel(event.request_id);
    }
    if (streaming_) queue_chunk(update.events);
    if (!builder_->done()) {
      if (streaming_) pump();
      return;
    }
    // Every choice ended, or one failed: the others are cancelled.
    for (uint64_t request_id : in_flight_) state_.frontend.cancel(request_id);
    in_flight_.clear();
    if (!builder_->failure()) state_.metrics.observe_request_latency(arrived - received_);
    if (streaming_) {
      if (chunked_) queued_ += "0\r\n\r\n";
      response_done_ = true;
      pump();
    } else if (builder_->failure()) {
      respond_error(*builder_->failure());
    } else {
      respond(200, "application/json", builder_->reply());
    }
  }

  void observe_latencies(int choice_idx, const CompletionEvent& event, Clock::time_point arrived) {
    if (event.new_tokens.empty()) return;
    Clock::time_point& last = last_token_[static_cast<size_t>(choice_idx)];
    if (!got_first_token_) {
      state_.metrics.observe_time_to_first_token(arrived - received_);
      got_first_token_ = true;
    } else if (last != Clock::time_point{}) {
      // A batch of k tokens in one event: k gaps of a k-th of the interval each.
      auto per_token = (arrived - last) / static_cast<int>(event.new_tokens.size());
      for (size_t idx = 0; idx < event.new_tokens.size(); ++idx) {
        state_.metrics.observe_inter_token_latency(per_token);
      }
    }
    last = arrived;
  }

  std::string connection_header() const {
    return keep_alive_ ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  }

  void queue_chunk(const std::string& data) {
    if (data.empty()) return;
    if (!chunked_) {
      queued_ += data;
      return;
    }
    char size[32];
    std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
    queued_ += size;
    queued_ += data;
    queued_ += "\r\n";
  }

  void respond(int status, std::string_view content_type, const std::string& body,
               const std::string& extra_headers = "") {
    state_.metrics.count_http_response(status);
    std::string_view reason = sv(http::obsolete_reason(http::int_to_status(status)));
    queued_ += "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
    queued_ += "Content-Type: " + std::string(content_type) + "\r\n";
    queued_ += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    queued_ += connection_header() + extra_headers + "\r\n";
    queued_ += body;
    response_done_ = true;
    pump();
  }

  void respond_error(const ApiError& error, bool close = false,
                     const std::string& extra_headers = "") {
    if (close) keep_alive_ = false;
    EEP_LOG_DEBUG("http: " << error.http_status << " " << error.message);
    respond(error.http_status, "application/json", error_body(error), extra_headers);
  }

  void pump() {
    if (write_in_flight_ || queued_.empty() || closed_) return;
    writing_.swap(queued_);
    queued_.clear();
    write_in_flight_ = true;
    arm_deadline(state_.options.write_timeout);
    net::async_write(
        socket_, net::buffer(writing_),
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_write(ec); });
  }

  void on_write(beast::error_code ec) {
    write_in_flight_ = false;
    disarm_deadline();
    if (closed_) return;
    if (ec) return close();  // the client went away mid-reply: close() cancels the request
    if (!queued_.empty()) return pump();
    if (response_done_) finish_exchange();
  }

  // The reply is fully written: the next request on this connection, or the end of it.
  void finish_exchange() {
    response_done_ = false;
    builder_.reset();
    if (!keep_alive_) return linger_close();
    if (watch_in_flight_) {
      // The read-ahead resumes request reading when it returns (now, from the cancel).
      resume_after_watch_ = true;
      beast::error_code ignored;
      socket_.cancel(ignored);
      return;
    }
    read_request();
  }

  // While a request runs, a pending read notices the client closing its connection. Bytes that
  // arrive (a pipelined request) are kept in buffer_ for the parser.
  void watch_for_disconnect() {
    if (watch_in_flight_ || closed_ || buffer_.size() >= kMaxReadAheadBytes) return;
    watch_in_flight_ = true;
    socket_.async_read_some(buffer_.prepare(kReadAheadChunkBytes),
                            [self = shared_from_this()](beast::error_code ec, size_t num_bytes) {
                              self->on_watch(ec, num_bytes);
                            });
  }

  void on_watch(beast::error_code ec, size_t num_bytes) {
    watch_in_flight_ = false;
    if (closed_) return;
    if (!ec) buffer_.commit(num_bytes);
    if (resume_after_watch_) {
      resume_after_watch_ = false;
      if (ec && ec != net::error::operation_aborted) return close();
      return read_request();
    }
    if (ec) {
      if (!in_flight_.empty()) {
        EEP_LOG_INFO("http: client of request " << in_flight_.front() << " went away ("
                                                << ec.message() << "); cancelling it");
      }
      return close();
    }
    watch_for_disconnect();
  }

  // Sends FIN, then drops what the client still sends until it closes or kLingerTimeout.
  void linger_close() {
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    arm_deadline(kLingerTimeout);
    // A read-ahead still pending does the draining (one read at a time on a socket).
    if (!watch_in_flight_) drain();
  }

  void drain() {
    buffer_.consume(buffer_.size());
    socket_.async_read_some(buffer_.prepare(kReadAheadChunkBytes),
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              if (self->closed_) return;
                              if (ec) return self->close();
                              self->drain();
                            });
  }

  // Idempotent. Cancels a request still running (the client can no longer receive it).
  void close() {
    if (closed_) return;
    closed_ = true;
    mark_busy();
    for (uint64_t request_id : in_flight_) state_.frontend.cancel(request_id);
    in_flight_.clear();
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    disarm_deadline();
  }

  void disarm_deadline() {
    ++deadline_generation_;
    deadline_.cancel();
  }

  std::optional<std::list<std::weak_ptr<HttpSession>>::iterator> idle_it_;  // in state_.idle
  tcp::socket socket_;
  net::steady_timer deadline_;  // closes the socket when it fires
  uint64_t deadline_generation_ = 0;
  bool reading_ = false;    // a request's header or body is being read
  bool timed_out_ = false;  // ... and its deadline passed: on_read_error answers 408
  ServerState& state_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;

  bool keep_alive_ = true;
  bool chunked_ = true;  // HTTP/1.1: the stream uses chunked transfer encoding
  bool closed_ = false;

  std::string queued_;   // bytes to write next
  std::string writing_;  // bytes of the write in flight
  bool write_in_flight_ = false;
  bool response_done_ = false;  // the whole reply is in queued_/writing_

  bool watch_in_flight_ = false;
  bool resume_after_watch_ = false;

  // The frontend's events on their way from the core's thread to this strand.
  struct InboxEvent {
    int choice_idx;
    CompletionEvent event;
    Clock::time_point arrived;
  };
  struct EventInbox {
    std::mutex mutex;
    std::deque<InboxEvent> events;
    bool drain_scheduled = false;  // a drain_inbox() is posted and has not taken the events yet
  };
  std::shared_ptr<EventInbox> inbox_ = std::make_shared<EventInbox>();

  std::vector<uint64_t> request_ids_;  // the exchange's requests, by choice index
  std::vector<uint64_t> in_flight_;    // those submitted and not yet finished
  bool streaming_ = false;
  std::optional<ReplyBuilder> builder_;
  Clock::time_point received_;
  std::vector<Clock::time_point> last_token_;  // by choice
  bool got_first_token_ = false;
};

void start_session(tcp::socket socket, ServerState& state) {
  std::make_shared<HttpSession>(std::move(socket), state)->start();
}

bool close_oldest_idle(ServerState& state) {
  std::shared_ptr<HttpSession> oldest;
  {
    std::lock_guard lock(state.idle_mutex);
    for (auto it = state.idle.begin(); it != state.idle.end(); ++it) {
      // An entry whose session is being destroyed is left to its destructor (mark_busy).
      if (auto session = it->lock()) {
        session->forget_idle_entry();
        state.idle.erase(it);
        oldest = std::move(session);
        break;
      }
    }
  }
  if (!oldest) return false;
  oldest->close_soon();
  return true;
}

}  // namespace eep::coordinator::http_server
