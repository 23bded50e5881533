// The coordinator's OpenAI-compatible HTTP API on Boost.Beast (docs/http_api.md):
//   POST /v1/completions (streaming as server-sent events or not), GET /v1/models,
//   GET /health, GET /metrics.
// It validates and tokenizes each request, submits it to a ServingFrontend and writes the
// CompletionEvents back; a client that goes away mid-request gets its request cancelled. The
// server runs on its own Asio threads; the frontend's callbacks are posted onto the connection's
// strand, so the frontend's thread never waits on a client.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "eep/common/status.h"
#include "eep/coordinator/metrics.h"
#include "eep/coordinator/serving.h"

namespace eep::coordinator {

struct HttpApiOptions {
  // When set, /v1/* requires "Authorization: Bearer <api_key>" (401 otherwise); /health and
  // /metrics stay open, as in vLLM.
  std::optional<std::string> api_key;
  size_t max_body_bytes = 1 << 20;     // larger bodies get 413
  size_t max_header_bytes = 16 << 10;  // larger request headers get 431
  // Open connections at most, so idle clients cannot take every file descriptor of the
  // coordinator (its admin and control sockets need some). At the limit a new connection closes
  // the oldest one that waits for a request (as nginx drains idle keep-alive connections); when
  // every connection has a request in flight it gets a 503 with Retry-After.
  int max_connections = 10000;
  int num_threads = 2;
  // A request's header and body must arrive within this, or it gets 408 and the connection
  // closes; an idle keep-alive connection (nothing sent) is closed after it without a reply.
  std::chrono::milliseconds request_timeout{60000};
  // One write to a client (a reply, or the stream chunks pending) must finish within this, so a
  // client that stops reading cannot hold a request (and its KV blocks) forever: the connection
  // closes and its request is cancelled.
  std::chrono::milliseconds write_timeout{30000};
};

class HttpApi {
 public:
  // address: "HOST:PORT" (HOST an IPv4/IPv6 literal or "localhost"; "[::1]:8000" for IPv6);
  // port 0 binds any free port (read it back with port()). The frontend must outlive this
  // object; it may call the callbacks it was given at any time until then, from any thread.
  HttpApi(std::string address, ServingFrontend& frontend, HttpApiOptions options = {});
  ~HttpApi();  // stop()
  HttpApi(const HttpApi&) = delete;
  HttpApi& operator=(const HttpApi&) = delete;

  // Binds, listens and starts the threads. kInvalidArgument for a bad address, kIoError when the
  // address cannot be bound (in use, not local). Call once.
  Status start();
  // Closes the listener and every connection, cancels every request still in flight
  // (frontend.cancel) and joins the threads. Idempotent; safe from any thread but the API's own.
  void stop();

  // The bound port after a successful start(); 0 before.
  int port() const;
  // The metrics /metrics serves; the coordinator may register its own families here (scaling
  // stage, EPLB balancedness). Valid for the object's lifetime.
  MetricsRegistry& metrics();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Splits "HOST:PORT" / "[V6]:PORT". kInvalidArgument with what was wrong.
Result<std::pair<std::string, int>> parse_host_port(const std::string& address);

}  // namespace eep::coordinator
