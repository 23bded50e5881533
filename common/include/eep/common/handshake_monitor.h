// Why a connection to the coordinator never came up: ZeroMQ's socket monitor reports a failed
// security handshake (a key the coordinator refused, a wrong coordinator key, CURVE on one side
// only), which otherwise looks like a peer that does not answer.
#pragma once

#include <optional>
#include <string>

#include <zmq.hpp>

namespace eep {

class HandshakeMonitor {
 public:
  // Watches `socket` (call before connect); `context` is the socket's.
  HandshakeMonitor(zmq::context_t& context, zmq::socket_t& socket);
  ~HandshakeMonitor();  // stops watching; destroy it before the socket
  HandshakeMonitor(const HandshakeMonitor&) = delete;
  HandshakeMonitor& operator=(const HandshakeMonitor&) = delete;

  // Reads the events so far; a sentence saying what failed, or nullopt when no handshake failed
  // (or one succeeded since).
  std::optional<std::string> failure();

 private:
  zmq::socket_t& watched_;
  zmq::socket_t events_;
  std::optional<std::string> failure_;
};

// `message` with the monitor's explanation appended when it has one.
std::string with_handshake_failure(HandshakeMonitor* monitor, std::string message);

}  // namespace eep
