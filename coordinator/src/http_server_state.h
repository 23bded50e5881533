// What the connections of the HTTP API share with the server that accepted them (http_api.cpp):
// the frontend, the options, the metrics, the gate through which the frontend's callbacks reach
// a connection, and the connections that wait for a request (the --max-connections policy,
// http_session.cpp).
#pragma once

#include <atomic>
#include <chrono>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

// After the standard headers: Boost.Asio 1.81's awaitable.hpp uses std::exchange unincluded.
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "eep/coordinator/http_api.h"
#include "eep/coordinator/metrics.h"
#include "eep/coordinator/serving.h"

namespace eep::coordinator::http_server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

// What the frontend's callbacks hold. Closed by stop() before the io_context goes away; a
// callback posts only while it is open. It holds the io_context's plain executor (a pointer),
// not a connection's strand: a strand's state must not outlive the io_context, and the frontend
// may keep a callback after the API has stopped.
struct EventGate {
  std::mutex mutex;
  bool open = false;
  std::optional<net::io_context::executor_type> executor;
};

class HttpSession;

struct ServerState {
  ServingFrontend& frontend;
  HttpApiOptions options;
  MetricsRegistry registry;
  ServingMetrics metrics{registry};
  std::shared_ptr<EventGate> gate = std::make_shared<EventGate>();
  std::atomic<int> num_connections{0};  // Sessions alive
  // Connections waiting for a request (idle keep-alive, or a header still arriving), oldest
  // first: at --max-connections the oldest is closed to make room, as nginx drains idle
  // keep-alive connections, so idle clients cannot lock new ones out.
  std::mutex idle_mutex;
  std::list<std::weak_ptr<HttpSession>> idle;

  ServerState(ServingFrontend& f, HttpApiOptions o) : frontend(f), options(std::move(o)) {}
};

}  // namespace eep::coordinator::http_server
