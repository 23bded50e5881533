// Facts about this machine that processes report about themselves.
#pragma once

#include <string>

namespace eep {

// gethostname(), or "localhost" when it fails.
std::string host_name();

}  // namespace eep
