#include "eep/coordinator/http_api.h"

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "eep/common/log.h"
#include "http_server_state.h"
#include "http_session.h"

namespace eep::coordinator {
namespace {

using namespace http_server;

// After a failed accept (out of file descriptors), wait before accepting again.
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(50);

}  // namespace

Result<std::pair<std::string, int>> parse_host_port(const std::string& address) {
  std::string host;
  std::string port_text;
  if (!address.empty() && address.front() == '[') {
    size_t close = address.find("]:");
    if (close == std::string::npos) {
      return error(ErrorCode::kInvalidArgument,
                   "bad HTTP address '" + address + "': expected [IPV6]:PORT");
    }
    host = address.substr(1, close - 1);
    port_text = address.substr(close + 2);
  } else {
    size_t colon = address.rfind(':');
    if (colon == std::string::npos || address.find(':') != colon) {
      return error(ErrorCode::kInvalidArgument,
                   "bad HTTP address '" + address + "': expected HOST:PORT");
    }
    host = address.substr(0, colon);
    port_text = address.substr(colon + 1);
  }
  int port = -1;
  if (!port_text.empty() && port_text.size() <= 5 &&
      port_text.find_first_not_of("0123456789") == std::string::npos) {
    port = std::stoi(port_text);
  }
  if (host.empty() || port < 0 || port > 65535) {
    return error(ErrorCode::kInvalidArgument,
                 "bad HTTP address '" + address + "': expected HOST:PORT with PORT in 0..65535");
  }
  return std::pair{host, port};
}

class HttpApi::Impl {
 public:
  Impl(std::string address, ServingFrontend& frontend, HttpApiOptions options)
      : address_(std::move(address)), state_(frontend, std::move(options)) {}

  Status start() {
    EEP_ASSIGN_OR_RETURN(auto host_port, parse_host_port(address_));
    beast::error_code ec;
    std::string host = host_port.first == "localhost" ? "127.0.0.1" : host_port.first;
    net::ip::address ip = net::ip::make_address(host, ec);
    if (ec) {
      return error(ErrorCode::kInvalidArgument, "bad HTTP address '" + address_ + "': '" +
                                                    host_port.first + "' is not an IP address");
    }
    io_context_ = std::make_unique<net::io_context>(state_.options.num_threads);
    acceptor_.emplace(net::make_strand(*io_context_));
    tcp::endpoint endpoint(ip, static_cast<unsigned short>(host_port.second));
    acceptor_->open(endpoint.protocol(), ec);
    if (!ec) acceptor_->set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_->bind(endpoint, ec);
    if (!ec) acceptor_->listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      acceptor_.reset();
      io_context_.reset();
      return error(ErrorCode::kIoError,
                   "cannot listen for HTTP on " + address_ + ": " + ec.message());
    }
    port_ = acceptor_->local_endpoint().port();
    work_guard_.emplace(io_context_->get_executor());
    {
      std::lock_guard lock(state_.gate->mutex);
      state_.gate->executor = io_context_->get_executor();
      state_.gate->open = true;
    }
    accept();
    for (int idx = 0; idx < std::max(1, state_.options.num_threads); ++idx) {
      threads_.emplace_back([this] { run_thread(); });
    }
    EEP_LOG_INFO("http: serving the OpenAI API on " << host << ":" << port_ << " ("
                                                    << threads_.size() << " threads)");
    return Status::ok();
  }

  void stop() {
    {
      std::lock_guard lock(state_.gate->mutex);
      state_.gate->open = false;
    }
    if (!io_context_) return;
    work_guard_.reset();
    io_context_->stop();
    for (auto& thread : threads_) thread.join();
    threads_.clear();
    acceptor_.reset();
    // Destroys every pending handler, so every HttpSession: each cancels its request in flight.
    io_context_.reset();
    port_ = 0;
  }

  int port() const { return port_; }
  MetricsRegistry& metrics() { return state_.registry; }

 private:
  void accept() {
    acceptor_->async_accept(net::make_strand(*io_context_),
                            [this](beast::error_code ec, tcp::socket socket) {
                              if (ec == net::error::operation_aborted) return;
                              if (ec) {
                                EEP_LOG_WARN("http: accept failed: " << ec.message());
                                retry_accept();
                                return;
                              }
                              beast::error_code ignored;
                              socket.set_option(tcp::no_delay(true), ignored);
                              if (state_.num_connections.load() >= state_.options.max_connections &&
                                  !close_oldest_idle(state_)) {
                                refuse_connection(std::move(socket));
                              } else {
                                start_session(std::move(socket), state_);
                              }
                              accept();
                            });
  }

  // Beyond --max-connections with every connection busy: a 503 that tells the client when to come
  // back, then close. The request is not read (it may never come); the reply is a few hundred
  // bytes, so the write completes at once or the client is gone.
  void refuse_connection(tcp::socket socket) {
    static const std::string kBody =
        R"({"error":{"message":"too many open connections to this server; retry shortly",)"
        R"("type":"service_unavailable","param":null,"code":"too_many_connections"}})";
    static const std::string kReply =
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json\r\n"
        "Retry-After: 1\r\n"
        "Connection: close\r\n"
        "Content-Length: " +
        std::to_string(kBody.size()) + "\r\n\r\n" + kBody;
    state_.metrics.count_http_response(503);
    auto owned = std::make_shared<tcp::socket>(std::move(socket));
    net::async_write(*owned, net::buffer(kReply), [owned](beast::error_code, size_t) {
      beast::error_code ignored;
      owned->shutdown(tcp::socket::shutdown_send, ignored);
      owned->close(ignored);
    });
  }

  void retry_accept() {
    auto timer = std::make_shared<net::steady_timer>(acceptor_->get_executor(), kAcceptRetryDelay);
    timer->async_wait([this, timer](beast::error_code ec) {
      if (!ec) accept();
    });
  }

  void run_thread() {
    // Handlers report errors as values; anything thrown is a bug we log and survive.
    for (;;) {
      try {
        io_context_->run();
        return;
      } catch (const std::exception& e) {
        EEP_LOG_ERROR("http: unexpected exception in a handler: " << e.what());
      }
    }
  }

  std::string address_;
  ServerState state_;  // outlives io_context_: sessions refer to it until they are destroyed
  std::unique_ptr<net::io_context> io_context_;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work_guard_;
  std::optional<tcp::acceptor> acceptor_;
  std::vector<std::thread> threads_;
  int port_ = 0;
};

HttpApi::HttpApi(std::string address, ServingFrontend& frontend, HttpApiOptions options)
    : impl_(std::make_unique<Impl>(std::move(address), frontend, std::move(options))) {}

HttpApi::~HttpApi() {
  stop();
}

Status HttpApi::start() {
  return impl_->start();
}
void HttpApi::stop() {
  impl_->stop();
}
int HttpApi::port() const {
  return impl_->port();
}
MetricsRegistry& HttpApi::metrics() {
  return impl_->metrics();
}

}  // namespace eep::coordinator
