// A client of the coordinator's admin socket, for eepctl, eep-bench and tests.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "eep/common/client_keys.h"
#include "eep/common/handshake_monitor.h"
#include "eep/common/protocol.h"
#include "eep/common/status.h"

namespace CLI {
class App;
class Option;
}  // namespace CLI

namespace eep {

// Where the admin socket is and how to prove who we are.
struct AdminConnection {
  std::string endpoint;
  std::string token;                     // the coordinator's --admin-token-file, if it has one
  std::optional<CurveClientKeys> curve;  // nullopt: a coordinator with --insecure-plaintext
};

// What eepctl and eep-bench take on their command line to reach the admin socket.
struct AdminClientOptions {
  std::string endpoint;
  std::string token_file;
  ClientKeyOptions keys;  // the operator key ("admin" in the fleet's keys directory)
};
// --admin, --token-file and the key options; the returned option is --admin (for needs()).
CLI::Option* add_admin_client_options(CLI::App& app, AdminClientOptions& options,
                                      const std::string& endpoint_help);
// The token and keys read from their files.
Result<AdminConnection> resolve_admin_connection(const AdminClientOptions& options);

class AdminClient {
 public:
  explicit AdminClient(AdminConnection connection);

  // Sends the request and waits for its reply (matched by seq; stale replies are dropped).
  // kUnavailable when nothing answers in time; the reply's own error is returned as a Status
  // too, with the reply kept in *reply when given.
  Result<nlohmann::json> call(protocol::AdminRequest request, std::chrono::milliseconds timeout);
  // Sends one raw frame and returns the raw reply frame (tests of malformed input).
  Result<std::string> call_raw(const std::string& frame, std::chrono::milliseconds timeout);

  const std::string& endpoint() const { return endpoint_; }

 private:
  Status no_answer(std::chrono::milliseconds timeout);

  std::string endpoint_;
  std::string token_;
  zmq::context_t context_;
  zmq::socket_t socket_;
  std::unique_ptr<HandshakeMonitor> monitor_;  // explains a key the coordinator refused
  uint64_t next_seq_ = 1;
};

}  // namespace eep
