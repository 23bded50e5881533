// A client of the coordinator's admin socket, for eepctl, eep-bench and tests.
#pragma once

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "eep/common/protocol.h"
#include "eep/common/status.h"

namespace eep {

class AdminClient {
 public:
  AdminClient(std::string endpoint, std::string token);

  // Sends the request and waits for its reply (matched by seq; stale replies are dropped).
  // kUnavailable when nothing answers in time; the reply's own error is returned as a Status
  // too, with the reply kept in *reply when given.
  Result<nlohmann::json> call(protocol::AdminRequest request, std::chrono::milliseconds timeout);
  // Sends one raw frame and returns the raw reply frame (tests of malformed input).
  Result<std::string> call_raw(const std::string& frame, std::chrono::milliseconds timeout);

  const std::string& endpoint() const { return endpoint_; }

 private:
  std::string endpoint_;
  std::string token_;
  zmq::context_t context_;
  zmq::socket_t socket_;
  uint64_t next_seq_ = 1;
};

}  // namespace eep
