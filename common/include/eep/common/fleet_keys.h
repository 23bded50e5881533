// A fleet's keys directory (--keys-dir, EEP_KEYS_DIR; default ~/.elastic-ep/keys):
//   coordinator.key / .pub   the coordinator's key pair (its public key is what clients trust)
//   worker.key / .pub        the fleet's worker key (authorized for every worker id)
//   admin.key / .pub         the operators' key (eepctl, eep-bench --admin)
//   authorized_keys          who may connect, and as whom (authorized_keys.h)
//   NAME.key / .pub          further keys that eep-keygen made (per host, per operator)
// Secret key files are mode 0600, the directory 0700 (docs/security.md).
#pragma once

#include <string>

#include "eep/common/authorized_keys.h"
#include "eep/common/status.h"

namespace eep {

// $HOME/.elastic-ep/keys (./.elastic-ep/keys without HOME).
std::string default_keys_dir();

inline std::string key_pair_path(const std::string& dir, const std::string& name) {
  return dir + "/" + name + ".key";
}
inline std::string authorized_keys_path(const std::string& dir) {
  return dir + "/authorized_keys";
}

// Makes a fresh set (coordinator, worker and admin key pairs, and authorized_keys naming the
// worker key for every id and the admin key as "admin") when `dir` has no coordinator.key:
// built in a private directory beside it and renamed into place, so two processes starting at
// once agree on one set and a reader never sees half of one. True when this call made it. A
// directory that exists, is not empty and has no coordinator.key is an error: keys are never
// mixed with other files by accident.
Result<bool> ensure_fleet_keys(const std::string& dir);

// Makes DIR/NAME.key and .pub and appends their public key to DIR/authorized_keys for `role`
// and `who` (a worker id pattern or an operator's name). An existing NAME is an error.
Status add_fleet_key(const std::string& dir, const std::string& name, KeyRole role,
                     const std::string& who);

}  // namespace eep
