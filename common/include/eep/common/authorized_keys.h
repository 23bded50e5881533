// Which CURVE public keys may connect to the coordinator, and as whom: the fleet's
// authorized_keys file, one key per line:
//   # role  who       public key (Z85)                            comment
//   worker  *         rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7    the fleet's worker key
//   worker  gpu-a-*   Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID    host gpu-a's workers only
//   worker  w3        ...                                         worker w3 only
//   admin   ops       ...                                         an operator (eepctl)
// A worker key speaks on the control socket for the worker ids its pattern names (`*` any id,
// `prefix*` ids that start with prefix, else exactly that id); an admin key speaks on the admin
// socket. The coordinator's ZAP handler (coordinator/zap_handler.h) admits a connection by its
// key and gives it a user id, "worker:<pattern>" or "admin:<name>"; every control message is then
// checked against it (may_speak_for), so no connection speaks for an id its key does not name.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "eep/common/status.h"

namespace eep {

enum class KeyRole { kWorker, kAdmin };

struct AuthorizedKey {
  KeyRole role = KeyRole::kWorker;
  std::string who;         // worker id pattern, or the operator's name
  std::string public_key;  // Z85
};

// Every line checked: a bad role, name, pattern or key is an error naming the line.
Result<std::vector<AuthorizedKey>> parse_authorized_keys(std::string_view text);
Result<std::vector<AuthorizedKey>> read_authorized_keys(const std::string& path);

// The line for `key`, in the format above.
std::string authorized_keys_line(const AuthorizedKey& key, const std::string& comment);

// "worker:<pattern>" or "admin:<name>": what the ZAP handler hands to ZeroMQ as the connection's
// User-Id, which then comes with every message of that connection.
std::string user_id_of(const AuthorizedKey& key);

// True when `pattern` (`*`, `prefix*` or an exact id) names `worker_id`.
bool worker_pattern_matches(std::string_view pattern, std::string_view worker_id);

// True when a connection with this User-Id may send as `worker_id`.
bool may_speak_for(std::string_view user_id, std::string_view worker_id);

}  // namespace eep
