// The keys of a client of the coordinator (eep-worker on the control socket, eepctl and
// eep-bench on the admin socket): its own key pair and the coordinator's public key, from the
// fleet's keys directory (fleet_keys.h) unless named one by one.
#pragma once

#include <optional>
#include <string>

#include "eep/common/curve_keys.h"
#include "eep/common/status.h"

namespace CLI {
class App;
}  // namespace CLI

namespace eep {

struct ClientKeyOptions {
  std::string keys_dir;              // default: default_keys_dir()
  std::string key_file;              // default: <keys_dir>/<role's key>.key
  std::string coordinator_key_file;  // default: <keys_dir>/coordinator.pub
  bool insecure_plaintext = false;   // no CURVE (a coordinator started the same way)
};

struct CurveClientKeys {
  CurveKeyPair own;
  std::string server_public_key;
};

// --keys-dir, --key-file, --coordinator-key-file, --insecure-plaintext. `key_name` is the key
// the client uses by default: "worker" or "admin".
void add_client_key_options(CLI::App& app, ClientKeyOptions& options, const std::string& key_name);

// The keys to connect with; nullopt with --insecure-plaintext. Errors name the file and what to
// do about it.
Result<std::optional<CurveClientKeys>> load_client_keys(const ClientKeyOptions& options,
                                                        const std::string& key_name);

}  // namespace eep
