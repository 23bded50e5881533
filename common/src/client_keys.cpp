#include "eep/common/client_keys.h"

#include <CLI/CLI.hpp>

#include "eep/common/fleet_keys.h"

namespace eep {

void add_client_key_options(CLI::App& app, ClientKeyOptions& options, const std::string& key_name) {
  app.add_option("--keys-dir", options.keys_dir,
                 "The fleet's keys directory (default " + default_keys_dir() + "): our key pair " +
                     key_name + ".key and the coordinator's public key coordinator.pub")
      ->group("Security");
  app.add_option("--key-file", options.key_file,
                 "Our CURVE key pair (default: " + key_name + ".key in --keys-dir)")
      ->group("Security");
  app.add_option("--coordinator-key-file", options.coordinator_key_file,
                 "The coordinator's public key (default: coordinator.pub in --keys-dir)")
      ->group("Security");
  app.add_flag("--insecure-plaintext", options.insecure_plaintext,
               "Connect without CURVE authentication and encryption (only to a coordinator "
               "started with --insecure-plaintext, on loopback)")
      ->group("Security");
}

Result<std::optional<CurveClientKeys>> load_client_keys(const ClientKeyOptions& options,
                                                        const std::string& key_name) {
  if (options.insecure_plaintext) return std::optional<CurveClientKeys>();
  const std::string dir = options.keys_dir.empty() ? default_keys_dir() : options.keys_dir;
  CurveClientKeys keys;
  const std::string own =
      options.key_file.empty() ? key_pair_path(dir, key_name) : options.key_file;
  auto pair = read_key_pair_file(own);
  if (!pair.is_ok()) {
    return error(pair.status().code(),
                 pair.status().message() +
                     " (the coordinator makes a fleet's keys at its first start in its "
                     "--keys-dir; eep-keygen makes more; --insecure-plaintext goes without)");
  }
  keys.own = std::move(pair).value();
  const std::string server = options.coordinator_key_file.empty() ? dir + "/coordinator.pub"
                                                                  : options.coordinator_key_file;
  EEP_ASSIGN_OR_RETURN(keys.server_public_key, read_public_key_file(server));
  return std::optional<CurveClientKeys>(std::move(keys));
}

}  // namespace eep
