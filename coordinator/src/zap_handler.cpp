#include "eep/coordinator/zap_handler.h"

#include <zmq_addon.hpp>

#include "eep/common/log.h"
#include "eep/common/text.h"

namespace eep::coordinator {

namespace {

constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
constexpr auto kPollInterval = std::chrono::milliseconds(100);

std::string z85_of(std::string_view key) {
  char text[41] = {};
  if (key.size() != 32 ||
      zmq_z85_encode(text, reinterpret_cast<const uint8_t*>(key.data()), key.size()) == nullptr) {
    return {};
  }
  return text;
}

}  // namespace

ZapVerdict zap_decide(const std::vector<AuthorizedKey>& keys, std::string_view domain,
                      std::string_view mechanism, std::string_view client_key) {
  if (mechanism != "CURVE") return {false, "CURVE required", {}};
  KeyRole role;
  if (domain == kControlZapDomain) {
    role = KeyRole::kWorker;
  } else if (domain == kAdminZapDomain) {
    role = KeyRole::kAdmin;
  } else {
    return {false, "unknown domain", {}};
  }
  const std::string z85 = z85_of(client_key);
  if (z85.empty()) return {false, "malformed key", {}};
  for (const AuthorizedKey& key : keys) {
    if (key.role == role && key.public_key == z85) return {true, "OK", user_id_of(key)};
  }
  return {false, "key not authorized for " + std::string(domain), {}};
}

Result<std::unique_ptr<ZapHandler>> ZapHandler::start(zmq::context_t& context,
                                                      std::vector<AuthorizedKey> keys) {
  std::unique_ptr<ZapHandler> handler(new ZapHandler(context));
  handler->keys_ = std::move(keys);
  handler->socket_.set(zmq::sockopt::linger, 0);
  try {
    handler->socket_.bind(kZapEndpoint);
  } catch (const zmq::error_t& e) {
    return error(ErrorCode::kInternal, std::string("cannot bind the ZAP handler: ") + e.what());
  }
  handler->thread_ = std::thread([h = handler.get()] { h->serve(); });
  return handler;
}

ZapHandler::~ZapHandler() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
}

void ZapHandler::replace_keys(std::vector<AuthorizedKey> keys) {
  std::lock_guard lock(mutex_);
  keys_ = std::move(keys);
}

void ZapHandler::serve() {
  auto last_log = std::chrono::steady_clock::time_point();
  uint64_t logged = 0;
  while (!stopping_) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    try {
      std::vector<zmq::message_t> request;
      if (zmq::poll(&item, 1, kPollInterval) > 0 &&
          zmq::recv_multipart(socket_, std::back_inserter(request), zmq::recv_flags::dontwait)) {
        answer(request);
      }
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) return;
      EEP_LOG_ERROR("ZAP handler: " << e.what());
    }
    // Refusals are logged at most once a second, with how many there were since.
    const auto now = std::chrono::steady_clock::now();
    if (num_refused_ > logged && now - last_log > std::chrono::seconds(1)) {
      EEP_LOG_WARN(num_refused_ - logged << " connection(s) refused: their key is not in "
                                            "authorized_keys for that socket (docs/security.md)");
      logged = num_refused_;
      last_log = now;
    }
  }
}

void ZapHandler::answer(std::vector<zmq::message_t>& request) {
  // version, request id, domain, address, identity, mechanism, credentials...
  ZapVerdict verdict;
  if (request.size() < 6) {
    verdict = {false, "malformed ZAP request", {}};  // still answered: a REP socket must
  } else if (request[0].to_string_view() != "1.0") {
    verdict = {false, "unknown ZAP version", {}};
  } else {
    std::lock_guard lock(mutex_);
    verdict = zap_decide(keys_, request[2].to_string_view(), request[5].to_string_view(),
                         request.size() > 6 ? request[6].to_string_view() : std::string_view());
  }
  if (!verdict.admitted) {
    ++num_refused_;
    EEP_LOG_DEBUG("refused a connection from "
                  << (request.size() > 3 ? printable(request[3].to_string_view()) : "?") << ": "
                  << verdict.status_text);
  }
  socket_.send(zmq::str_buffer("1.0"), zmq::send_flags::sndmore);
  socket_.send(request.size() > 1 ? std::move(request[1]) : zmq::message_t(),
               zmq::send_flags::sndmore);
  socket_.send(zmq::buffer(std::string(verdict.admitted ? "200" : "400")),
               zmq::send_flags::sndmore);
  socket_.send(zmq::buffer(verdict.status_text), zmq::send_flags::sndmore);
  socket_.send(zmq::buffer(verdict.user_id), zmq::send_flags::sndmore);
  socket_.send(zmq::message_t(), zmq::send_flags::none);  // no metadata
}

}  // namespace eep::coordinator
