// Small helpers over cppzmq: binding with the real endpoint read back, multipart send/receive of
// protocol messages, and address checks. "Would block" is not an error: receives return nullopt.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "eep/common/client_keys.h"
#include "eep/common/protocol.h"
#include "eep/common/status.h"

namespace eep {

// Binds and returns the endpoint actually bound (tcp://127.0.0.1:* resolves to a port).
Result<std::string> bind_socket(zmq::socket_t& socket, const std::string& endpoint);
Status connect_socket(zmq::socket_t& socket, const std::string& endpoint);

// True for tcp://127.x.x.x, tcp://localhost, tcp://[::1], ipc:// and inproc:// endpoints.
bool is_loopback_endpoint(const std::string& endpoint);

// Sends [identity?][type][envelope] (the identity frame only on a ROUTER).
void send_envelope(zmq::socket_t& socket, const std::optional<std::string>& identity,
                   const protocol::Envelope& envelope);

// The same, but false instead of waiting when the message cannot be queued now (no connection:
// e.g. a handshake the peer refused). Never sends half a message.
bool try_send_envelope(zmq::socket_t& socket, const protocol::Envelope& envelope);

// Receives one multipart message if one is ready within timeout (zero: do not wait).
std::optional<std::vector<zmq::message_t>> recv_frames(zmq::socket_t& socket,
                                                       std::chrono::milliseconds timeout);

// Sets the options every socket of ours wants: no linger on close, so a dead peer never blocks
// exit.
void set_common_options(zmq::socket_t& socket);

// CURVE on a connecting socket: our key pair, and the one server key we trust. Set before
// connect.
void set_curve_client(zmq::socket_t& socket, const CurveClientKeys& keys);
// CURVE on a bound socket: every connection must authenticate with a key that the ZAP handler
// of the socket's context admits (coordinator/zap_handler.h); `zap_domain` tells the handler
// which socket asks. Set before bind.
void set_curve_server(zmq::socket_t& socket, const CurveKeyPair& keys,
                      const std::string& zap_domain);

}  // namespace eep
