// The control plane's authentication (docs/security.md): CURVE on the admin and control sockets,
// the ZAP handler that admits keys, and the check that binds each control message to the
// worker ids its connection's key may speak for.
#include <filesystem>

#include "eep/common/curve_keys.h"
#include "eep/common/fleet_keys.h"
#include "eep/common/log.h"
#include "eep/common/text.h"
#include "eep/coordinator/coordinator.h"

namespace eep::coordinator {

namespace {

std::string keys_dir_of(const CoordinatorConfig& config) {
  return config.keys_dir.empty() ? default_keys_dir() : config.keys_dir;
}

}  // namespace

Status Coordinator::secure_sockets() {
  if (config_.insecure_plaintext) {
    for (const std::string& endpoint : {config_.admin_endpoint, config_.control_endpoint}) {
      if (!is_loopback_endpoint(endpoint)) {
        return error(ErrorCode::kInvalidArgument,
                     "refusing --insecure-plaintext with a socket on " + endpoint +
                         ": anyone who reaches it could speak for any worker or operator. Bind "
                         "both sockets to loopback, or leave CURVE on (docs/security.md)");
      }
    }
    EEP_LOG_WARN(
        "--insecure-plaintext: the control and admin sockets take anyone who can reach "
        "them, unauthenticated and unencrypted");
    return Status::ok();
  }
  const std::string dir = keys_dir_of(config_);
  // Keys made here at the first start suit a fleet on one host; a socket that other hosts reach
  // needs keys that were handed to them (docs/hosts.md), so none are made for it.
  for (const std::string& endpoint : {config_.admin_endpoint, config_.control_endpoint}) {
    if (!is_loopback_endpoint(endpoint) &&
        !std::filesystem::exists(key_pair_path(dir, "coordinator"))) {
      return error(ErrorCode::kFailedPrecondition,
                   "refusing to serve " + endpoint + " without the fleet's keys: " + dir +
                       " holds no coordinator.key. Workers on other hosts need the keys that "
                       "the coordinator trusts: make them first with `eep-keygen --dir " +
                       dir +
                       "` and one key per worker host (`--worker HOST --ids 'HOST-*'`), see "
                       "docs/security.md and docs/hosts.md");
    }
  }
  EEP_ASSIGN_OR_RETURN(const bool made, ensure_fleet_keys(dir));
  if (made) EEP_LOG_INFO("made the fleet's keys in " << dir);
  EEP_ASSIGN_OR_RETURN(const CurveKeyPair own,
                       read_key_pair_file(key_pair_path(dir, "coordinator")));
  EEP_ASSIGN_OR_RETURN(auto keys, read_authorized_keys(authorized_keys_path(dir)));
  const size_t num_keys = keys.size();
  EEP_ASSIGN_OR_RETURN(zap_, ZapHandler::start(context_, std::move(keys)));
  set_curve_server(admin_socket_, own, std::string(kAdminZapDomain));
  set_curve_server(control_socket_, own, std::string(kControlZapDomain));
  EEP_LOG_INFO("control and admin sockets: CURVE, keys in " << dir << " (" << num_keys
                                                            << " authorized keys)");
  return Status::ok();
}

void Coordinator::reload_authorized_keys() {
  if (!zap_) {
    EEP_LOG_WARN("SIGHUP: no keys to reload (--insecure-plaintext)");
    return;
  }
  const std::string path = authorized_keys_path(keys_dir_of(config_));
  auto keys = read_authorized_keys(path);
  if (!keys.is_ok()) {
    EEP_LOG_ERROR("SIGHUP: keeping the keys in use: " << keys.status().to_string());
    return;
  }
  EEP_LOG_INFO("SIGHUP: " << keys->size() << " authorized keys read from " << path
                          << "; new connections are judged by them");
  zap_->replace_keys(std::move(keys).value());
}

bool Coordinator::sender_authorized(std::vector<zmq::message_t>& frames,
                                    const std::string& worker_id) {
  if (!zap_) return true;
  // ZeroMQ attaches the ZAP handler's user id to every message of an admitted connection.
  const char* user_id = nullptr;
  try {
    user_id = frames.back().gets("User-Id");
  } catch (const zmq::error_t&) {
  }
  if (user_id != nullptr && may_speak_for(user_id, worker_id)) return true;
  EEP_LOG_ERROR("dropped a control message sent as '"
                << printable(worker_id) << "' by a connection whose key speaks for '"
                << printable(user_id ? user_id : "nobody") << "'");
  return false;
}

}  // namespace eep::coordinator
