// Shared secrets (admin token, fleet token) live in files, never on command lines.
#pragma once

#include <string>

#include "eep/common/status.h"

namespace eep {

// The file's content with trailing whitespace removed. `what` names the token in errors
// ("admin token"); an unreadable or empty file is an error.
Result<std::string> read_token_file(const std::string& path, const std::string& what);

}  // namespace eep
