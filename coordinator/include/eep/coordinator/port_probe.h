// Whether a store port of this host is held by another process (another fleet's store, any
// listener): the PortAllocator's probe, so that a scale never hands rank 0 a port it cannot bind.
// Only hosts this coordinator can test are probed (loopback and its own host name); others are
// found at the build (the scale fails and the fleet keeper tries again with the next ports).
#pragma once

#include <string>

namespace eep::coordinator {

// True when binding TCP `port` on every address of this host fails with "address in use".
bool port_held_locally(int port);
// True for 127.x.x.x, localhost, ::1 and this machine's host name.
bool is_this_host(const std::string& host);

}  // namespace eep::coordinator
