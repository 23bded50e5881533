#include "eep/common/zmq_util.h"

#include <zmq_addon.hpp>

namespace eep {

void set_common_options(zmq::socket_t& socket) {
  socket.set(zmq::sockopt::linger, 0);
}

void set_curve_client(zmq::socket_t& socket, const CurveClientKeys& keys) {
  socket.set(zmq::sockopt::curve_serverkey, keys.server_public_key);
  socket.set(zmq::sockopt::curve_publickey, keys.own.public_key);
  socket.set(zmq::sockopt::curve_secretkey, keys.own.secret_key);
}

void set_curve_server(zmq::socket_t& socket, const CurveKeyPair& keys,
                      const std::string& zap_domain) {
  socket.set(zmq::sockopt::curve_server, true);
  socket.set(zmq::sockopt::curve_secretkey, keys.secret_key);
  socket.set(zmq::sockopt::zap_domain, zap_domain);
}

Result<std::string> bind_socket(zmq::socket_t& socket, const std::string& endpoint) {
  try {
    socket.bind(endpoint);
    return socket.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return error(ErrorCode::kIoError, "cannot bind " + endpoint + ": " + e.what() +
                                          " (is another coordinator running on it?)");
  }
}

Status connect_socket(zmq::socket_t& socket, const std::string& endpoint) {
  try {
    socket.connect(endpoint);
    return Status::ok();
  } catch (const zmq::error_t& e) {
    return error(ErrorCode::kInvalidArgument, "cannot connect to " + endpoint + ": " + e.what());
  }
}

bool is_loopback_endpoint(const std::string& endpoint) {
  if (endpoint.rfind("ipc://", 0) == 0 || endpoint.rfind("inproc://", 0) == 0) return true;
  const std::string tcp = "tcp://";
  if (endpoint.rfind(tcp, 0) != 0) return false;
  std::string host = endpoint.substr(tcp.size());
  if (host.rfind("[::1]", 0) == 0) return true;
  host = host.substr(0, host.rfind(':'));
  return host == "localhost" || host.rfind("127.", 0) == 0;
}

void send_envelope(zmq::socket_t& socket, const std::optional<std::string>& identity,
                   const protocol::Envelope& envelope) {
  protocol::Frames frames = protocol::encode(envelope);
  if (identity) socket.send(zmq::buffer(*identity), zmq::send_flags::sndmore);
  socket.send(zmq::buffer(frames.type), zmq::send_flags::sndmore);
  socket.send(zmq::buffer(frames.json), zmq::send_flags::none);
}

bool try_send_envelope(zmq::socket_t& socket, const protocol::Envelope& envelope) {
  protocol::Frames frames = protocol::encode(envelope);
  // Once the first part is queued, ZeroMQ queues the rest of the message with it.
  if (!socket.send(zmq::buffer(frames.type),
                   zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
    return false;
  }
  socket.send(zmq::buffer(frames.json), zmq::send_flags::none);
  return true;
}

std::optional<std::vector<zmq::message_t>> recv_frames(zmq::socket_t& socket,
                                                       std::chrono::milliseconds timeout) {
  if (timeout.count() > 0) {
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, timeout) == 0) return std::nullopt;
  }
  std::vector<zmq::message_t> frames;
  auto received =
      zmq::recv_multipart(socket, std::back_inserter(frames), zmq::recv_flags::dontwait);
  if (!received) return std::nullopt;
  return frames;
}

}  // namespace eep
