// CURVE key pairs (ZeroMQ's Curve25519 keys in Z85 text) and the files that hold them.
//
// A key file is the text ZeroMQ users know from CZMQ's certificates:
//   # elastic-ep CURVE key pair "worker"; keep this file secret
//   public-key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
//   secret-key = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"
// `NAME.key` holds both keys and must be readable by its owner only; `NAME.pub` holds the
// public key alone and may be handed to anyone.
#pragma once

#include <string>

#include "eep/common/status.h"

namespace eep {

inline constexpr size_t kZ85KeyChars = 40;  // a 32-byte key in Z85

struct CurveKeyPair {
  std::string public_key;  // Z85, 40 characters
  std::string secret_key;  // Z85, 40 characters
};

// A fresh key pair from libsodium's random source (zmq_curve_keypair).
Result<CurveKeyPair> make_curve_key_pair();

// True when `text` is 40 characters of Z85 that decode to a 32-byte key.
bool is_z85_key(const std::string& text);

// Reads NAME.key; refuses a file that group or others may read ("chmod 600 FILE").
Result<CurveKeyPair> read_key_pair_file(const std::string& path);
// Reads the public key of NAME.pub or of NAME.key.
Result<std::string> read_public_key_file(const std::string& path);

// Writes DIR/NAME.key (mode 0600) and DIR/NAME.pub (0644). Never overwrites: a file that exists
// (another process made it first) is an already_exists error and is left as it was.
Status write_key_files(const std::string& dir, const std::string& name, const CurveKeyPair& pair);

// Writes `content` to `path` with `mode`, whole or not at all: through a temporary file linked
// into place, so a reader never sees half a file and an existing file is never replaced
// (already_exists).
Status write_new_file(const std::string& path, const std::string& content, unsigned mode);

}  // namespace eep
