// The coordinator's ZAP handler (ZeroMQ RFC 27): ZeroMQ asks it, for every connection to a CURVE
// socket of the coordinator's context, whether the client's public key may connect. Admitted
// keys are the fleet's authorized_keys (common/authorized_keys.h): worker keys on the control
// socket (ZAP domain "control"), admin keys on the admin socket ("admin"). An admitted
// connection gets the key's user id ("worker:<pattern>", "admin:<name>"), which ZeroMQ attaches
// to each of its messages; the coordinator checks every control message against it.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "eep/common/authorized_keys.h"
#include "eep/common/status.h"

namespace eep::coordinator {

inline constexpr std::string_view kControlZapDomain = "control";
inline constexpr std::string_view kAdminZapDomain = "admin";

struct ZapVerdict {
  bool admitted = false;
  std::string status_text;  // why, as ZAP's status text ("unknown key", "OK")
  std::string user_id;      // the key's user id when admitted
};

// The decision, pure: `client_key` is the 32-byte public key of a CURVE client.
ZapVerdict zap_decide(const std::vector<AuthorizedKey>& keys, std::string_view domain,
                      std::string_view mechanism, std::string_view client_key);

class ZapHandler {
 public:
  // Binds inproc://zeromq.zap.01 on `context` and answers on a thread of its own, so handshakes
  // never wait for the coordinator's loop. Start it before any CURVE socket binds: ZeroMQ admits
  // every key when no handler is bound.
  static Result<std::unique_ptr<ZapHandler>> start(zmq::context_t& context,
                                                   std::vector<AuthorizedKey> keys);
  ~ZapHandler();

  // Key rotation: connections made from now on are judged by `keys` (established ones keep the
  // user id they were admitted with).
  void replace_keys(std::vector<AuthorizedKey> keys);
  uint64_t num_refused() const { return num_refused_.load(); }

 private:
  explicit ZapHandler(zmq::context_t& context) : socket_(context, zmq::socket_type::rep) {}
  void serve();
  void answer(std::vector<zmq::message_t>& request);

  zmq::socket_t socket_;
  std::mutex mutex_;  // guards keys_
  std::vector<AuthorizedKey> keys_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> num_refused_{0};
  std::thread thread_;
};

}  // namespace eep::coordinator
