#include "eep/common/handshake_monitor.h"

#include <atomic>
#include <cstring>

namespace eep {

namespace {

std::string next_monitor_endpoint() {
  static std::atomic<int> counter{0};
  return "inproc://eep-handshake-monitor-" + std::to_string(counter++);
}

}  // namespace

HandshakeMonitor::HandshakeMonitor(zmq::context_t& context, zmq::socket_t& socket)
    : watched_(socket), events_(context, zmq::socket_type::pair) {
  const std::string endpoint = next_monitor_endpoint();
  const int watched = ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                      ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_SUCCEEDED;
  if (zmq_socket_monitor(socket.handle(), endpoint.c_str(), watched) == 0) {
    events_.set(zmq::sockopt::linger, 0);
    events_.connect(endpoint);
  }
}

HandshakeMonitor::~HandshakeMonitor() {
  zmq_socket_monitor(watched_.handle(), nullptr, 0);
}

std::optional<std::string> HandshakeMonitor::failure() {
  while (true) {
    zmq::message_t event;
    zmq::message_t address;
    try {
      if (!events_.recv(event, zmq::recv_flags::dontwait)) break;
      if (event.more()) (void)events_.recv(address, zmq::recv_flags::dontwait);
    } catch (const zmq::error_t&) {
      break;
    }
    if (event.size() < 6) continue;
    uint16_t id = 0;
    uint32_t value = 0;
    std::memcpy(&id, event.data(), sizeof(id));
    std::memcpy(&value, static_cast<const char*>(event.data()) + 2, sizeof(value));
    switch (id) {
      case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        failure_.reset();
        break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        failure_ = "the coordinator refused our key (ZAP status " + std::to_string(value) +
                   "): it is not in its authorized_keys for this socket (docs/security.md)";
        break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        failure_ =
            "the security handshake failed: is CURVE on at both ends (--insecure-plaintext on "
            "one side only?) and is the coordinator's public key the right one?";
        break;
      default:
        failure_ =
            "the security handshake failed: is the coordinator's public key (coordinator.pub) "
            "the right one, and CURVE on at both ends?";
        break;
    }
  }
  return failure_;
}

std::string with_handshake_failure(HandshakeMonitor* monitor, std::string message) {
  if (monitor == nullptr) return message;
  if (auto failure = monitor->failure()) message += "; " + *failure;
  return message;
}

}  // namespace eep
