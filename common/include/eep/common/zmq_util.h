// Small helpers over cppzmq: binding with the real endpoint read back, multipart send/receive of
// protocol messages, and address checks. "Would block" is not an error: receives return nullopt.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <zmq.hpp>

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

// Receives one multipart message if one is ready within timeout (zero: do not wait).
std::optional<std::vector<zmq::message_t>> recv_frames(zmq::socket_t& socket,
                                                       std::chrono::milliseconds timeout);

// Sets the options every socket of ours wants: no linger on close, so a dead peer never blocks
// exit.
void set_common_options(zmq::socket_t& socket);

}  // namespace eep
